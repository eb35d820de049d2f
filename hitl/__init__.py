"""hitl: human-in-the-loop automation of MSP ticket operations on Prefect 3."""
