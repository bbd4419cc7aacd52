"""app.imaging.scratch: buffers lent and taken back, never shared by two borrowers at once."""

import threading

import numpy as np

from app.imaging.scratch import ScratchPool


def pool(max_kept_bytes: int = 1 << 20) -> ScratchPool:
    return ScratchPool(max_kept_bytes=max_kept_bytes, min_lent_bytes=100)


def test_a_buffer_given_back_is_lent_again() -> None:
    scratch = pool()
    with scratch.lend((100, 30), np.float32) as first:
        assert first.shape == (100, 30) and first.dtype == np.float32
        address = first.ctypes.data
    with scratch.lend((50, 10), np.uint8) as second:  # smaller: fits in the same buffer
        assert second.ctypes.data == address
    assert scratch.kept_bytes() == 100 * 30 * 4


def test_small_needs_are_not_pooled() -> None:
    scratch = pool()
    with scratch.lend((99,), np.uint8) as small:
        assert small.shape == (99,)
    assert scratch.kept_bytes() == 0


def test_buffers_lent_at_once_do_not_overlap() -> None:
    scratch = pool()
    with (
        scratch.lend((1000,), np.uint8) as a,
        scratch.lend((1000,), np.uint8) as b,
        scratch.lend((200,), np.uint8) as c,
    ):
        for one, other in ((a, b), (a, c), (b, c)):
            assert not np.shares_memory(one, other)
    assert scratch.kept_bytes() == 2200


def test_the_largest_buffers_are_kept_up_to_the_limit() -> None:
    scratch = pool(max_kept_bytes=10_000)
    with scratch.lend((3000,), np.uint8), scratch.lend((6000,), np.uint8), scratch.lend((2000,), np.uint8):
        pass
    assert scratch.kept_bytes() == 6000 + 3000  # the 2000 made room
    with scratch.lend((20_000,), np.uint8) as large:  # over the limit: lent, never kept
        assert large.size == 20_000
    assert scratch.kept_bytes() == 6000 + 3000


def test_threads_never_share_a_buffer() -> None:
    scratch = pool()
    errors: list[str] = []

    def work(value: int) -> None:
        for _ in range(200):
            with scratch.lend((64, 64), np.uint8) as buffer:
                buffer.fill(value)
                if not (buffer == value).all():
                    errors.append(f"thread {value} saw another's writes")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert scratch.kept_bytes() <= 8 * 64 * 64
