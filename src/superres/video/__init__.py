"""Video: reading (demux, decode, timestamps, colour tags), the frame pipeline, temporal stabilisation,
segments (plan, resume, assemble) and writing (encode, remux, passthrough), each in its own module."""
