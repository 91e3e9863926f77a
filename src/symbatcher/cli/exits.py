"""What a command's exit status means, for scripts and schedulers that act on it."""

EXIT_OK = 0  # every item succeeded
EXIT_FAILED = 1  # some items failed (their errors are in the run directory)
EXIT_USAGE = 2  # a usage or set-up error: nothing ran
EXIT_BAD_INPUT = 3  # the input has bad records: nothing ran
EXIT_BUDGET = 4  # the budget stopped the run: the rest stays pending
EXIT_INTERRUPTED = 130  # Ctrl-C: what finished is kept, the same command resumes
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (`... | head`)
EXIT_TERMINATED = 143  # SIGTERM: as a Ctrl-C
