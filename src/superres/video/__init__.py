"""Video: reading (demux, decode, timestamps, colour tags), the frame pipeline (threads and bounded queues),
segments (plan, resume, assemble) and writing (encode, remux), each in its own module; ``engine`` runs a job
from the checks made before a model loads to the assembled output. Temporal stabilisation plugs in per
segment (``temporal``).

    reading.py   open, probe, index packets (timestamps, keyframes), decode frame ranges to RGB
    formats.py   output container, encoder and pixel format, checked before a model loads
    segments.py  keyframe-aligned segments, their files beside the output, the output lock
    pipeline.py  decode / network / encode threads joined by bounded queues
    writing.py   segment encoder (NUT), assembly by remux with audio, subtitles, chapters, metadata
    engine.py    prepare_video (all checks), run_video (resume, pipeline, assemble), process_video
"""

from .engine import process_video
from .reading import VideoInfo, probe_video

__all__ = ["VideoInfo", "probe_video", "process_video"]
