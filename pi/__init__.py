"""What only a Raspberry Pi needs: GPIO pins, the push-to-talk button, the status LED (see pi/README.md)."""
