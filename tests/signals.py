"""Children that Ctrl-C (SIGINT) stops even when the tests themselves run as a background job: POSIX
shells start those with SIGINT ignored, children inherit that, and Python then keeps it ignored."""

import signal


def sigint_default() -> None:
    """`preexec_fn` for a child the test interrupts, as a terminal's Ctrl-C would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
