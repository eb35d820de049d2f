"""`python -m hitl.cli`."""

from hitl.cli import main

main()
