"""The puppet's face rig: how a still portrait is made to speak, with no model weights.

- geometry.py: the mouth and jaw as curves, modelled from the few landmarks the finder gives.
- warp.py: the smooth displacement fields that open the lips and swing the jaw, inverted
  into the sampling map cv2.remap needs.
- interior.py: what shows between the parted lips (cavity, teeth, tongue), coloured from
  the portrait.
- visemes.py: mouth shapes over time, from the phoneme alignment (blended across
  neighbours) or, without one, from the audio's level and spectrum.

Everything here is a pure function of the portrait, the speech and the frame's index, so
a chunk renders the same however the job was cut or resumed.
"""
