//! The Matrix test harness itself, before any test relies on it: the throwaway
//! Synapse starts, two humans driven by matrix-sdk exchange messages in an encrypted
//! room and decrypt them, and the low message rate limit refuses a user without an
//! override (as it will the bot) while the humans, whose limit is lifted, send freely.

use anyhow::{Result, ensure};
use chorus_tests::matrix_client::MatrixUser;
use chorus_tests::synapse::{MESSAGE_BURST, Synapse};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_harness_encrypted_exchange() -> Result<()> {
    let synapse = Synapse::shared().await?;
    let alice = MatrixUser::new_human(synapse, "alice").await?;
    let bob = MatrixUser::new_human(synapse, "bob").await?;

    let room_id = alice.create_room(&[bob.user_id()], false, true).await?;
    // Room version 12: the room id is a hash with no server name, and matrix-sdk's
    // ruma parses it.
    ensure!(
        room_id.server_name().is_none(),
        "expected a room version 12 id without a server name, got {room_id}"
    );
    bob.join(&room_id).await?;
    alice.wait_joined(&room_id, bob.user_id(), WAIT).await?;
    bob.wait_joined(&room_id, alice.user_id(), WAIT).await?;

    let hello = format!("hello from alice {}", uuid::Uuid::new_v4());
    let hello_id = alice.send_text(&room_id, &hello).await?;
    let seen = bob
        .wait_until("alice's message, decrypted", &room_id, WAIT, |me| {
            me.seen().into_iter().find(|m| m.event_id == hello_id)
        })
        .await?;
    ensure!(
        seen.body == hello,
        "bob read {:?}, alice sent {hello:?}",
        seen.body
    );
    ensure!(seen.encrypted, "alice's message reached bob unencrypted");
    let raw = synapse
        .raw_event(
            &bob.account.access_token,
            room_id.as_str(),
            hello_id.as_str(),
        )
        .await?;
    ensure!(
        raw["type"] == "m.room.encrypted",
        "the server stores alice's message as {}, not m.room.encrypted",
        raw["type"]
    );

    let answer = format!("hi alice, bob here {}", uuid::Uuid::new_v4());
    let answer_id = bob.send_text(&room_id, &answer).await?;
    let seen = alice
        .wait_until("bob's answer, decrypted", &room_id, WAIT, |me| {
            me.seen().into_iter().find(|m| m.event_id == answer_id)
        })
        .await?;
    ensure!(
        seen.body == answer && seen.encrypted,
        "alice read {seen:?}, bob sent {answer:?} encrypted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_harness_rate_limit_spares_humans_only() -> Result<()> {
    let synapse = Synapse::shared().await?;
    let human = MatrixUser::new_human(synapse, "human").await?;
    // A user registered like the bot: no override, Synapse's low rc_message applies.
    let limited = synapse
        .register(
            &format!("limited-{}", chorus_tests::synapse::short_id()),
            false,
        )
        .await?;
    let room_id = human.create_room(&[&limited.user_id], false, false).await?;
    synapse
        .join_raw(&limited.access_token, room_id.as_str())
        .await?;

    let sends = 3 * MESSAGE_BURST as usize;
    let mut refused = None;
    for i in 0..sends {
        let (status, body) = synapse
            .send_text_raw(
                &limited.access_token,
                room_id.as_str(),
                &format!("fast {i}"),
            )
            .await?;
        if status == 429 {
            refused = Some(body);
            break;
        }
        ensure!(
            status == 200,
            "send {i} of the limited user: {status} {body}"
        );
    }
    let refused = refused.ok_or_else(|| {
        anyhow::anyhow!("{sends} fast sends of a user without override were all accepted")
    })?;
    ensure!(
        refused["errcode"] == "M_LIMIT_EXCEEDED" && refused["retry_after_ms"].as_u64().is_some(),
        "the 429 is not M_LIMIT_EXCEEDED with retry_after_ms: {refused}"
    );

    for i in 0..sends {
        let (status, body) = synapse
            .send_text_raw(
                &human.account.access_token,
                room_id.as_str(),
                &format!("human {i}"),
            )
            .await?;
        ensure!(
            status == 200,
            "send {i} of the human (rate limit lifted) got {status} {body}"
        );
    }
    Ok(())
}
