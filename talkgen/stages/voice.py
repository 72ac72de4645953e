"""The voice to clone: the reference recording, checked, and its transcript (given or heard)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from talkgen.placement import release

if TYPE_CHECKING:
    from talkgen.engines.f5_tts import Reference
    from talkgen.recipe import STTConfig, TTSConfig


def reference_voice(tts_config: TTSConfig, stt_config: STTConfig, recipe: str, note: Callable[[str], None]) -> Reference:
    """The f5-tts Reference; without --voice-text, talkgen's own speech-to-text writes the transcript.

    The recording is checked (length, silence) before any model loads.
    """
    from talkgen import media
    from talkgen.engines import f5_tts
    from talkgen.engines.stt import SAMPLE_RATE, load_stt

    audio = f5_tts.read_reference(tts_config)  # a bad recording fails before any model loads
    text = f5_tts.voice_text(tts_config)
    if not text:
        stt = load_stt(stt_config, recipe)
        # Whisper takes 16 kHz: decoded again by ffmpeg rather than resampled here.
        text = stt.transcribe(media.decode_audio(f5_tts.voice_path(tts_config), SAMPLE_RATE)).text.strip()
        del stt
        release()
        note(f"the voice recording says (pass --voice-text to correct it): {text}")
    return f5_tts.reference(tts_config, audio, text)
