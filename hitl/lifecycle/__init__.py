"""The ticket lifecycle's stages as plain functions: the batch path and the per-ticket flow call
the same ones, so a ticket has one lifecycle and one set of decision rows whichever path ran it."""
