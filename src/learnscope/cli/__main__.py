"""`python -m learnscope.cli` (and `torchrun ... -m learnscope.cli`): the `learnscope` command."""

from learnscope.cli import main

main()
