"""The protocol language: reading protocol, fragment, rig, thresholds and course files
into plain data, every value located, every problem collected.
"""
