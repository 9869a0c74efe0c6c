"""One rank of a 2-rank gloo job that ends the way a user's script does (started by tests/test_comm_exit.py).

Usage: python tests/_comm_exit_worker.py close|no-close. It makes a flat Communicator (which starts the
default group) and a hierarchical one (subgroups), runs blocking and async collectives on both, leaves
some async work unwaited, then either closes both or just returns, leaving the groups to the
Communicator's exit hook. The process must exit with code 0 and without "terminate called" on stderr.
"""

from __future__ import annotations

import os
import sys

import torch

from workbench.comm import CollectiveError, Communicator

RANK = int(os.environ["RANK"])

flat = Communicator("cpu", timeout=30.0)
hier = Communicator("cpu", cluster="ab"[RANK], timeout=30.0)
for comm in (flat, hier):
    x = torch.full((1024,), float(RANK + 1))
    comm.all_reduce(x)
    assert torch.equal(x, torch.full((1024,), 3.0)), x[:4]
    handle = comm.all_reduce(torch.ones(256), "max", async_op=True)
    comm.broadcast(torch.zeros(8), src=1)
    handle.wait()
# async work still in flight at the end (both ranks post it, so it completes), never waited for
unwaited = [comm.all_reduce(torch.ones(4096), async_op=True) for comm in (flat, hier) for _ in range(3)]
if sys.argv[1] == "close":
    hier.close()
    flat.close()  # destroys the default group too
    flat.close()  # closing twice is harmless
    try:
        flat.all_reduce(torch.ones(4))
    except CollectiveError as e:
        assert "closed" in str(e), e
    else:
        raise AssertionError("a closed Communicator ran a collective")
