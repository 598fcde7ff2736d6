"""`rocky-relay voices`: every catalogue voice with its backend, language, source and licence; the configured
one marked; selection by name, and a clear refusal for a name that is not a voice."""

from __future__ import annotations

import json

import pytest

from actors.tts import TtsSettings, make_synthesizer
from models.voices import VOICES, VoiceNotFound, backend_for
from tests.helpers import run_cli


def rows(*argv: str) -> tuple[int, list[dict[str, object]]]:
    code, out = run_cli(*argv, "voices", "--json")
    return code, [json.loads(line) for line in out.splitlines()]


def test_every_voice_is_listed_with_its_backend_language_source_and_licence() -> None:
    code, listed = rows()
    assert code == 0
    assert [r["name"] for r in listed] == [v.name for v in VOICES]
    assert {r["name"]: r["backend"] for r in listed} == {"joe": "piper", "heart": "hibari", "espeak": "espeak",
                                                        "rocky-xtts": "rocky_say", "openai": "openai"}
    assert all(r["language"] and r["source"] and r["license"] for r in listed)
    assert [r["name"] for r in listed if r["configured"]] == ["joe"]  # the default
    by_name = {r["name"]: r for r in listed}
    assert by_name["joe"]["state"] == by_name["heart"]["state"] == "installed"
    assert "Apache-2.0" in str(by_name["heart"]["license"])


@pytest.mark.parametrize("setting, marked", [("tts.voice=heart", "heart"), ("tts.voice=af_heart", "heart"),
                                             ("tts.backend=espeak", "espeak"), ("tts.voice=rocky-xtts", "rocky-xtts")])
def test_the_configured_voice_is_marked(setting: str, marked: str) -> None:
    code, listed = rows("--set", setting)
    assert code == 0 and [r["name"] for r in listed if r["configured"]] == [marked]


def test_the_table_says_how_to_choose_and_a_wrong_name_is_refused_with_the_names() -> None:
    code, out = run_cli("voices")
    assert code == 0 and "configured: tts.voice -> joe (piper)" in out and "licence: Apache-2.0" in out
    code, out = run_cli("--set", "tts.voice=emma", "voices")
    assert code == 1 and "'emma' is not a known voice: use one of joe, heart, espeak, rocky-xtts, openai" in out


def test_selection_by_name_picks_the_backend() -> None:
    assert backend_for("piper", "heart") == "hibari"
    assert backend_for("piper", "joe") == "piper"
    assert backend_for("espeak", "") == "espeak"
    assert backend_for("piper", "/voices/mine.onnx") == "piper"  # a Piper voice of the user's own
    assert make_synthesizer(TtsSettings(voice="espeak")).description.startswith("espeak-ng")
    with pytest.raises(VoiceNotFound, match=r"'heart' is spoken by the hibari backend.*tts.backend is 'espeak'"):
        backend_for("espeak", "heart")
    with pytest.raises(VoiceNotFound, match=r"'jo' is not a known voice: use one of joe, heart"):
        make_synthesizer(TtsSettings(voice="jo"))


@pytest.mark.parametrize("voice, line", [("joe", "OK    tts  joe-medium"),
                                         ("heart", "OK    tts  heart             none needed (tts.backend=hibari)"),
                                         ("rocky-xtts", "remote (tts.backend=rocky_say)")])
def test_models_verify_knows_a_voice_by_name(voice: str, line: str) -> None:
    _code, out = run_cli("--set", f"tts.voice={voice}", "models", "verify", "--fast")
    (tts,) = [row for row in out.splitlines() if row[6:11] == "tts  "]
    assert line in tts
