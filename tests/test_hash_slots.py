"""Password hashes are bounded among the processes of one `serve`: slot files that a hash holds
an flock on. A slot another process holds is taken here too; a holder that dies frees its slot
(the kernel drops the lock), so a killed worker never leaves logins refused for ever."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service.hash_slots import HashSlots

HOLDER = """
import sys, time
from pathlib import Path
from service.hash_slots import HashSlots
slots = HashSlots(int(sys.argv[2]), Path(sys.argv[1]))
with slots.taken(0) as a, slots.taken(0) as b:
    print("held" if a and b else "not held", flush=True)
    sys.stdin.readline()  # until the test ends or kills us
"""


def test_slots_held_by_another_process_are_taken_until_it_dies(tmp_path: Path) -> None:
    slots = HashSlots(2, tmp_path)
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            with slots.taken(0.02) as free:
                assert not free, "both slots are held by the other process"
        finally:
            holder.kill()
            holder.wait(10)
    with slots.taken(0) as first, slots.taken(0) as second:
        assert first and second, "the dead holder's slots are free again"
        with slots.taken(0) as third:
            assert not third, "never more than the count"


def test_without_a_folder_the_slots_bound_this_processes_threads(tmp_path: Path) -> None:
    slots = HashSlots(1)
    with slots.taken(0) as first, slots.taken(0) as second:
        assert (first, second) == (True, False)
    with slots.taken(0) as again:
        assert again, "a slot is given back when its block ends"
