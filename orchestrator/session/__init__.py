"""The session: running a checked plan on the rig, and what it leaves behind
(journal, markers, recording, summary), resumed and read back.
"""
