"""helper_utils.going_further.decoding: uploads decoded in worker processes, with a time limit that stops them."""

import io
import os
import signal
import threading
import time

import numpy as np
import pytest
from PIL import Image

from helper_utils.going_further.decoding import DecodePool, DecoderBusy, DecodeResult, DecodeTimeout, DecodeWorker
from helper_utils.images import QueryImageError, decode_image, resize_for_model


def _encoded(image, fmt, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def pool():
    pool = DecodePool(slots=2).start()
    yield pool
    pool.close()


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("PNG", "RGBA"), ("WEBP", "RGB")])
def test_a_worker_returns_the_pixels_the_kit_decodes_in_process(pool, fmt, mode):
    photo = _encoded(Image.effect_noise((90, 70), 40).convert(mode), fmt)
    result = pool.decode(photo)
    assert isinstance(result, DecodeResult) and result.pixels.shape == (64, 64, 3) and result.pixels.dtype == np.uint8
    np.testing.assert_array_equal(result.pixels, resize_for_model(decode_image(photo), 64))
    assert result.peak_rss_kib > 0 and result.seconds > 0


def test_a_refused_image_is_the_decoders_message_and_the_worker_stays(pool):
    before = pool.pids()
    with pytest.raises(QueryImageError, match="GIF file, which is not accepted"):
        pool.decode(b"GIF89a" + bytes(100))
    assert pool.pids() == before


def test_a_decode_over_the_limit_kills_the_worker():
    worker = DecodeWorker()
    worker.decode(_encoded(Image.new("RGB", (8, 8)), "PNG"))  # started: the limit covers decoding only
    slow = _encoded(Image.new("RGBA", (3400, 3400), (1, 2, 3, 100)), "PNG")
    with pytest.raises(DecodeTimeout, match="took longer than"):
        worker.decode(slow, time_limit_s=0.02)
    worker.kill()
    assert not worker.alive() and not _alive(worker.pid)


def test_a_worker_that_died_between_uploads_is_replaced_unseen():
    pool = DecodePool(slots=1).start()
    (pid,) = pool.pids()
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert pool.decode(_encoded(Image.new("RGB", (8, 8), (9, 9, 9)), "PNG")).pixels.shape == (64, 64, 3)
    assert pool.pids() != [pid]
    pool.close()


def test_a_request_that_waits_too_long_for_a_slot_is_told_so():
    pool = DecodePool(slots=1, wait_s=0.05).start()
    slow = _encoded(Image.new("RGBA", (3400, 3400), (1, 2, 3, 100)), "PNG")
    busy = threading.Thread(target=lambda: pool.decode(slow))
    busy.start()
    time.sleep(0.02)
    try:
        with pytest.raises(DecoderBusy, match="busy"):
            pool.decode(slow)
    finally:
        busy.join()
        pool.close()


def test_workers_end_with_the_pool_and_with_the_service():
    pool = DecodePool(slots=2).start()
    pids = pool.pids()
    pool.close()
    assert pool.pids() == [] and not any(_alive(pid) for pid in pids)
    worker = DecodeWorker()
    worker.wait_until_ready()
    worker.process.stdin.close()  # the service went away: its pipe closed
    assert worker.process.wait(timeout=20) == 0
