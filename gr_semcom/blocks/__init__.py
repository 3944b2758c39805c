"""gr_semcom's GNU Radio blocks. Importing any of them installs the
top-block wait() fix of :mod:`gr_semcom.blocks.gr_wait` (GNU Radio 3.10's
concurrent-wait race, which GRC's generated signal handler triggers)."""
from .gr_wait import install as _install_wait_fix

_install_wait_fix()
