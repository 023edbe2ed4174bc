//! The guard over scripted chunk streams.

use super::*;
use actix_http::ws::{OpCode, Parser};
use actix_web::web::BytesMut;
use futures_util::StreamExt;

fn limits(max_message_bytes: usize) -> GuardLimits {
    GuardLimits {
        max_message_bytes,
        frames_per_sec: 1,
        frame_burst: 10_000,
    }
}

/// A masked client frame.
fn frame(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    Parser::write_message(&mut buf, payload, op, fin, true);
    buf.to_vec()
}

type Chunks = futures_util::stream::Iter<std::vec::IntoIter<Result<Bytes, PayloadError>>>;

fn guarded(chunks: Vec<Vec<u8>>, limits: GuardLimits) -> (FrameGuard<Chunks>, InboundHandle) {
    let chunks: Vec<_> = chunks.into_iter().map(|c| Ok(Bytes::from(c))).collect();
    FrameGuard::wrap(
        futures_util::stream::iter(chunks),
        limits,
        Arc::new(Metrics::new()),
    )
}

/// Everything the guard yields: forwarded chunks, and the refusal if any.
async fn drain(mut guard: FrameGuard<Chunks>) -> (Vec<Vec<u8>>, bool) {
    let mut forwarded = Vec::new();
    while let Some(item) = guard.next().await {
        match item {
            Ok(bytes) => forwarded.push(bytes.to_vec()),
            Err(_) => {
                assert!(guard.next().await.is_none(), "nothing after a refusal");
                return (forwarded, true);
            }
        }
    }
    (forwarded, false)
}

#[actix_web::test]
async fn chunks_are_split_at_frame_ends_and_forwarded_whole_otherwise() {
    let a = frame(OpCode::Text, true, b"hello");
    let b = frame(OpCode::Ping, true, b"");
    let c = frame(OpCode::Binary, true, &[7; 300]);
    let mut one_chunk = a.clone();
    one_chunk.extend_from_slice(&b);
    one_chunk.extend_from_slice(&c[..100]);
    let (guard, handle) = guarded(vec![one_chunk, c[100..].to_vec()], limits(1024));
    let (forwarded, refused) = drain(guard).await;
    assert!(!refused);
    assert_eq!(forwarded, vec![a, b, c[..100].to_vec(), c[100..].to_vec()]);
    assert_eq!(handle.refusal(), None);
}

#[actix_web::test]
async fn a_huge_declared_length_is_refused_at_the_header() {
    // FIN + text, masked, 64-bit length 2^40, mask key; then payload.
    let header = vec![0x81, 0xFF, 0, 0, 0x01, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    let (guard, handle) = guarded(vec![header, vec![0; 4096], vec![0; 4096]], limits(1024));
    let (forwarded, refused) = drain(guard).await;
    assert!(refused);
    assert!(forwarded.is_empty(), "no payload forwarded");
    assert!(matches!(handle.refusal(), Some(Refusal::TooLarge(_))));
    assert_eq!(handle.peak(), 0);
}

#[actix_web::test]
async fn a_header_split_across_chunks_is_refused_when_it_is_whole() {
    let header = frame(OpCode::Text, true, &[b' '; 2000]);
    // The 16-bit length form: 2 + 2 + 4 header bytes, fed one at a time.
    let chunks = header[..8].iter().map(|b| vec![*b]).collect();
    let (guard, handle) = guarded(chunks, limits(1024));
    let (forwarded, refused) = drain(guard).await;
    assert!(refused);
    assert_eq!(forwarded.len(), 7, "the first seven header bytes");
    assert!(matches!(handle.refusal(), Some(Refusal::TooLarge(_))));
}

#[actix_web::test]
async fn a_frame_at_the_limit_passes() {
    let (guard, handle) = guarded(vec![frame(OpCode::Text, true, &[b' '; 1024])], limits(1024));
    let (forwarded, refused) = drain(guard).await;
    assert!(!refused);
    assert_eq!(forwarded.concat().len(), 1024 + 8);
    assert_eq!(handle.peak(), 1024 + 8);
    handle.frame_received();
    assert_eq!(handle.buffered(), 0);
}

#[actix_web::test]
async fn fragments_may_not_add_up_past_the_limit() {
    let chunks = vec![
        frame(OpCode::Text, false, &[b' '; 600]),
        frame(OpCode::Ping, true, b"interleaved"),
        frame(OpCode::Continue, false, &[b' '; 424]),
        frame(OpCode::Continue, true, b"x"),
    ];
    let (guard, handle) = guarded(chunks, limits(1024));
    let (forwarded, refused) = drain(guard).await;
    assert!(refused);
    assert_eq!(forwarded.len(), 3);
    assert!(matches!(handle.refusal(), Some(Refusal::TooLarge(_))));
}

#[actix_web::test]
async fn a_message_may_have_at_most_1024_fragments() {
    let fragmented = |count: usize| {
        let mut chunks = vec![frame(OpCode::Text, false, b" ")];
        chunks.extend((2..count).map(|_| frame(OpCode::Continue, false, b" ")));
        chunks.push(frame(OpCode::Continue, true, b" "));
        chunks
    };
    let (guard, _) = guarded(fragmented(MAX_FRAGMENTS), limits(4096));
    assert!(!drain(guard).await.1, "1024 fragments pass");
    let (guard, handle) = guarded(fragmented(MAX_FRAGMENTS + 1), limits(4096));
    let (forwarded, refused) = drain(guard).await;
    assert!(refused);
    assert_eq!(forwarded.len(), MAX_FRAGMENTS);
    assert!(matches!(handle.refusal(), Some(Refusal::TooLarge(_))));
    // A finished message frees the count for the next one.
    let mut twice = fragmented(MAX_FRAGMENTS);
    twice.extend(fragmented(MAX_FRAGMENTS));
    let (guard, _) = guarded(twice, limits(4096));
    assert!(!drain(guard).await.1);
}

#[actix_web::test]
async fn control_frames_over_125_bytes_or_fragmented_are_protocol_errors() {
    for bad in [
        frame(OpCode::Ping, true, &[0; 126]),
        frame(OpCode::Pong, false, b"x"),
    ] {
        let (guard, handle) = guarded(vec![bad], limits(65_536));
        assert!(drain(guard).await.1);
        assert!(matches!(handle.refusal(), Some(Refusal::Protocol(_))));
    }
    let (guard, _) = guarded(vec![frame(OpCode::Ping, true, &[0; 125])], limits(65_536));
    assert!(!drain(guard).await.1);
}

#[actix_web::test]
async fn frames_beyond_the_burst_are_rate_limited() {
    let ping = frame(OpCode::Ping, true, b"");
    let burst = GuardLimits {
        frame_burst: 5,
        ..limits(1024)
    };
    let (guard, _) = guarded(vec![ping.repeat(5)], burst);
    assert!(!drain(guard).await.1);
    let (guard, handle) = guarded(vec![ping.repeat(6)], burst);
    let (forwarded, refused) = drain(guard).await;
    assert!(refused);
    assert_eq!(forwarded.len(), 5);
    assert_eq!(handle.refusal(), Some(Refusal::RateLimited));
}

#[actix_web::test]
async fn the_account_follows_frames_through_the_parser_and_assembler() {
    let a = frame(OpCode::Text, false, &[b' '; 100]);
    let (guard, handle) = guarded(vec![a.clone()], limits(1024));
    drain(guard).await;
    assert_eq!(handle.buffered(), a.len());
    handle.frame_received();
    handle.set_assembling(100);
    assert_eq!(handle.buffered(), 100);
    handle.set_assembling(0);
    assert_eq!(handle.buffered(), 0);
    assert_eq!(handle.peak(), a.len());
}
