use super::*;

/// Reads `frame` through a pool buffer, as a connection does.
async fn received(pool: &Arc<ReceiveBufferPool>, frame: &[u8]) -> Bytes {
    let mut buffer = pool.take(frame.len());
    let mut reader = frame;
    buffer
        .read_from(&mut reader, frame.len())
        .await
        .expect("read a whole frame");
    buffer.freeze()
}

#[tokio::test]
async fn a_buffer_returns_to_its_pool_when_the_last_bytes_drop_and_is_reused() {
    let pool = ReceiveBufferPool::new(CACHED_BYTES_MAX);
    let frame = received(&pool, &[7u8; 3000]).await;
    let address = frame.as_ptr();
    let slice = frame.slice(10..20);
    drop(frame);
    assert_eq!(pool.cached_count(), 0, "a slice still refers to the buffer");
    drop(slice);
    assert_eq!(pool.cached_count(), 1);
    assert_eq!(pool.cached_bytes(), SIZE_CLASS_BYTES_MIN);

    let again = received(&pool, &[9u8; 4000]).await;
    assert_eq!(again.as_ptr(), address, "the cached buffer is reused");
    assert_eq!(pool.cached_count(), 0);
    assert_eq!(&again[..], &[9u8; 4000][..]);
}

#[tokio::test]
async fn a_reused_buffer_shows_only_the_new_frames_bytes() {
    let pool = ReceiveBufferPool::new(CACHED_BYTES_MAX);
    drop(received(&pool, &[0xAB; 4096]).await);
    let short = received(&pool, b"short").await;
    assert_eq!(&short[..], b"short");
}

#[tokio::test]
async fn a_frame_above_the_largest_class_is_allocated_alone_and_never_cached() {
    let pool = ReceiveBufferPool::new(usize::MAX);
    let large = vec![1u8; SIZE_CLASS_BYTES_MAX + 1];
    let frame = received(&pool, &large).await;
    assert_eq!(frame.len(), large.len());
    drop(frame);
    assert_eq!(pool.cached_count(), 0);
    assert_eq!(pool.cached_bytes(), 0);
}

#[tokio::test]
async fn frames_take_the_smallest_class_that_holds_them() {
    let pool = ReceiveBufferPool::new(CACHED_BYTES_MAX);
    for (length, class) in [
        (0, SIZE_CLASS_BYTES_MIN),
        (SIZE_CLASS_BYTES_MIN, SIZE_CLASS_BYTES_MIN),
        (SIZE_CLASS_BYTES_MIN + 1, 4 * SIZE_CLASS_BYTES_MIN),
        (100_000, 256 * 1024),
        (SIZE_CLASS_BYTES_MAX, SIZE_CLASS_BYTES_MAX),
    ] {
        drop(pool.take(length));
        assert_eq!(pool.cached_bytes(), class, "a frame of {length} bytes");
        drop(pool.take(length));
        assert_eq!(pool.cached_bytes(), class, "taken and given back again");
        // Empty the cache for the next case.
        let taken = pool.take(length);
        assert_eq!(pool.cached_bytes(), 0);
        std::mem::forget(taken);
    }
}

#[tokio::test]
async fn the_cache_stays_within_its_bounds() {
    let cached_bytes_max = 1024 * 1024;
    let pool = ReceiveBufferPool::new(cached_bytes_max);
    // Many buffers of one class out at once, then all given back: the class keeps at most
    // its share, the rest are freed.
    let buffers: Vec<ReceiveBuffer> = (0..100).map(|_| pool.take(16 * 1024)).collect();
    drop(buffers);
    assert_eq!(pool.cached_bytes(), cached_bytes_max / CLASS_SHARE);
    // Other classes fill the rest, never past the total.
    for length in [4 * 1024, 64 * 1024, 256 * 1024] {
        let buffers: Vec<ReceiveBuffer> = (0..100).map(|_| pool.take(length)).collect();
        drop(buffers);
        assert!(pool.cached_bytes() <= cached_bytes_max);
    }
    assert_eq!(pool.cached_bytes(), cached_bytes_max);
    // A class larger than the whole cache is never cached.
    drop(pool.take(4 * 1024 * 1024));
    assert_eq!(pool.cached_bytes(), cached_bytes_max);
}

#[tokio::test]
async fn an_early_end_inside_a_frame_is_an_error() {
    let pool = ReceiveBufferPool::new(CACHED_BYTES_MAX);
    let mut buffer = pool.take(100);
    let mut reader: &[u8] = &[1u8; 60];
    let error = buffer
        .read_from(&mut reader, 100)
        .await
        .expect_err("the frame ends early");
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(buffer.as_slice().len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_frames_keep_the_cache_within_its_bound() {
    let cached_bytes_max = 2 * 1024 * 1024;
    let pool = ReceiveBufferPool::new(cached_bytes_max);
    let length_max = 256 * 1024;
    let tasks: Vec<_> = (0..48usize)
        .map(|task| {
            let pool = Arc::clone(&pool);
            let fill = task as u8;
            let source = vec![fill; length_max];
            tokio::spawn(async move {
                let mut held = Vec::new();
                for round in 0..40usize {
                    let length = 1 + (task * 7919 + round * 104_729) % length_max;
                    let frame = received(&pool, &source[..length]).await;
                    assert_eq!(frame.len(), length);
                    assert!(frame.iter().all(|&byte| byte == fill));
                    assert!(pool.cached_bytes() <= cached_bytes_max);
                    held.push(frame);
                    if held.len() > 3 {
                        held.remove(0);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a frame task");
    }
    assert!(pool.cached_bytes() <= cached_bytes_max);
    assert!(pool.cached_count() > 0, "buffers came back");
}

#[tokio::test]
async fn a_frame_is_writable_in_place_only_once_no_bytes_refer_to_it() {
    let pool = ReceiveBufferPool::new(CACHED_BYTES_MAX);
    let mut buffer = pool.take(8);
    let mut reader: &[u8] = b"abcdefgh";
    buffer.read_from(&mut reader, 8).await.expect("read");
    let (bytes, mut frame) = buffer.freeze_shared();
    let part = bytes.slice(2..5);
    assert_eq!(frame.range_of(&part), Some(2..5));
    assert_eq!(frame.range_of(b"elsewhere"), None);
    assert!(
        frame.bytes_mut().is_none(),
        "Bytes still refer to the frame"
    );
    drop(bytes);
    assert!(
        frame.bytes_mut().is_none(),
        "a slice still refers to the frame"
    );
    drop(part);
    let writable = frame.bytes_mut().expect("nothing else refers to the frame");
    writable[0] = b'A';
    assert_eq!(frame.as_slice(), b"Abcdefgh");
    assert_eq!(pool.cached_count(), 0, "the handle still holds the buffer");
    drop(frame);
    assert_eq!(pool.cached_count(), 1);
}
