"""app.scratch: buffers lent and taken back, never shared by two borrowers at once."""

import threading

import numpy as np

from app.scratch import ScratchPool


def test_a_buffer_given_back_is_lent_again() -> None:
    pool = ScratchPool(max_kept_bytes=1 << 20)
    with pool.lend((100, 30), np.float32) as first:
        assert first.shape == (100, 30) and first.dtype == np.float32
        address = first.ctypes.data
    with pool.lend((50, 10), np.uint8) as second:  # smaller: fits in the same buffer
        assert second.ctypes.data == address
    assert pool.kept_bytes() == 100 * 30 * 4


def test_buffers_lent_at_once_do_not_overlap() -> None:
    pool = ScratchPool(max_kept_bytes=1 << 20)
    with pool.lend((1000,), np.uint8) as a, pool.lend((1000,), np.uint8) as b, pool.lend((10,), np.uint8) as c:
        for one, other in ((a, b), (a, c), (b, c)):
            assert not np.shares_memory(one, other)
    assert pool.kept_bytes() == 2010


def test_as_many_buffers_are_kept_as_were_lent_at_once() -> None:
    pool = ScratchPool(max_kept_bytes=1 << 20)
    with pool.lend((10,), np.uint8), pool.lend((20,), np.uint8):
        pass
    with pool.lend((5000,), np.uint8):  # larger than both: one of them makes way
        pass
    with pool.lend((8000,), np.uint8), pool.lend((9000,), np.uint8):
        pass
    assert pool.kept_bytes() == 8000 + 9000


def test_a_need_over_the_limit_gets_a_buffer_not_kept() -> None:
    pool = ScratchPool(max_kept_bytes=1000)
    with pool.lend((10,), np.uint8):
        pass
    with pool.lend((2000,), np.uint8) as large:
        assert large.size == 2000
    assert pool.kept_bytes() == 10  # the small one stays for the next small need


def test_threads_never_share_a_buffer() -> None:
    pool = ScratchPool(max_kept_bytes=1 << 20)
    errors: list[str] = []

    def work(value: int) -> None:
        for _ in range(200):
            with pool.lend((64, 64), np.uint8) as buffer:
                buffer.fill(value)
                if not (buffer == value).all():
                    errors.append(f"thread {value} saw another's writes")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert pool.kept_bytes() <= 8 * 64 * 64
