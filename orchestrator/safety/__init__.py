"""The plan and its judgement: a protocol compiled for a rig and thresholds into
every pulse it will deliver, and the safety rules applied to those pulses.
"""
