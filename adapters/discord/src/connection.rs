//! The gateway client: serenity's HTTP client (pointed at a test's fake when
//! `api_url` says so), a first check of the API and the token, the gateway session
//! run on the surface's tasks, and its events handed to the bot.

use crate::allow::Allowlist;
use crate::bot::{Bot, SURFACE};
use crate::config::DiscordConfig;
use crate::error::DiscordError;
use crate::rest::Rest;
use crate::sink::DiscordSinkFactory;
use chorus_core::Core;
use chorus_core::chat::{SurfaceHandle, SurfaceState};
use serenity::all::{
    ClientBuilder, Command, ConnectionStage, Context, EventHandler, GatewayIntents, GuildId,
    HttpBuilder, Interaction, Message, Reaction, Ready, ShardStageUpdateEvent,
};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// The intents the bot asks for; message content only when configured (privileged).
fn intents(config: &DiscordConfig) -> GatewayIntents {
    let mut intents = GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::GUILD_MESSAGE_REACTIONS
        | GatewayIntents::DIRECT_MESSAGE_REACTIONS;
    if config.message_content_intent {
        intents |= GatewayIntents::MESSAGE_CONTENT;
    }
    intents
}

struct Handler {
    bot: Arc<Bot>,
    guild_ids: Vec<GuildId>,
    /// Told once, at the first READY (or never: then start times out).
    ready: Mutex<Option<oneshot::Sender<()>>>,
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        let _ = self.bot.me.set(ready.user.id);
        ctx.http.set_application_id(ready.application.id);
        let commands = crate::commands::definitions();
        if self.guild_ids.is_empty() {
            if let Err(e) = Command::set_global_commands(&ctx.http, commands).await {
                tracing::error!(error = %e, "discord: cannot register the slash commands");
            }
        } else {
            for guild in &self.guild_ids {
                if let Err(e) = guild.set_commands(&ctx.http, commands.clone()).await {
                    tracing::error!(guild = %guild, error = %e, "discord: cannot register the slash commands in a guild");
                }
            }
        }
        tracing::info!(user = %ready.user.id, guilds = ready.guilds.len(), "discord: the bot is connected");
        if let Some(tx) = self.ready.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
    }

    /// A gateway session lost after it was up is reported (serenity reconnects,
    /// resuming or identifying again); back up, the surface is connected again.
    async fn shard_stage_update(&self, _ctx: Context, event: ShardStageUpdateEvent) {
        match event.new {
            ConnectionStage::Connected => self.bot.surface.report(SurfaceState::Connected),
            stage if event.old == ConnectionStage::Connected => {
                tracing::warn!(
                    ?stage,
                    "discord: the gateway connection was lost; reconnecting"
                );
                self.bot.surface.report(SurfaceState::Down {
                    error: format!("the gateway connection was lost ({stage:?}); reconnecting"),
                });
            }
            _ => {}
        }
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        let bot = self.bot.clone();
        self.bot
            .surface
            .spawn(async move { bot.on_message(msg).await });
    }

    async fn reaction_add(&self, _ctx: Context, reaction: Reaction) {
        let bot = self.bot.clone();
        self.bot
            .surface
            .spawn(async move { bot.on_reaction(reaction).await });
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        let bot = self.bot.clone();
        self.bot
            .surface
            .spawn(async move { bot.on_interaction(interaction).await });
    }
}

pub async fn start(core: Core, config: &DiscordConfig) -> Result<SurfaceHandle, DiscordError> {
    let api = config.api_url().to_string();
    let wait = Duration::from_secs(config.connect_timeout_secs);
    let mut builder = HttpBuilder::new(config.token.expose());
    if config.is_api_overridden() {
        // serenity ignores the proxy while its rate limiter is on; the renderer paces
        // edits and waits out 429s itself.
        builder = builder.proxy(api.clone()).ratelimiter_disabled(true);
    }
    let http = builder.build();
    // serenity falls back to Discord's real gateway when `GET /gateway` fails, so the
    // API is checked here first, with a bound; the token too, to name that problem.
    match tokio::time::timeout(wait, http.get_gateway()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(DiscordError::Unreachable {
                api,
                message: e.to_string(),
            });
        }
        Err(_) => {
            return Err(DiscordError::Unreachable {
                api,
                message: format!("no answer within {} s", wait.as_secs()),
            });
        }
    }
    match tokio::time::timeout(wait, http.get_current_user()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(DiscordError::Token {
                api,
                message: e.to_string(),
            });
        }
        Err(_) => {
            return Err(DiscordError::Unreachable {
                api,
                message: format!("no answer within {} s", wait.as_secs()),
            });
        }
    }
    let rest = Rest::new(&api, config.token.clone()).map_err(DiscordError::Client)?;
    let sinks = Arc::new(DiscordSinkFactory::new(rest, config.limits()));
    let hub = core.render_hub(SURFACE, &config.command_prefix, sinks.clone());
    let surface = SurfaceHandle::new(hub.clone());
    let bot = Arc::new(Bot {
        core,
        hub: hub.clone(),
        surface: surface.clone(),
        allow: Allowlist::from_config(config),
        prefix: config.command_prefix.clone(),
        sinks,
        http: OnceLock::new(),
        me: OnceLock::new(),
        places: Mutex::default(),
    });
    let (ready_tx, ready_rx) = oneshot::channel();
    let handler = Handler {
        bot: bot.clone(),
        guild_ids: config
            .guild_ids
            .iter()
            .filter_map(|g| g.parse::<u64>().ok())
            .map(GuildId::new)
            .collect(),
        ready: Mutex::new(Some(ready_tx)),
    };
    let mut client = ClientBuilder::new_with_http(http, intents(config))
        .event_handler(handler)
        .await
        .map_err(|e| DiscordError::Client(e.to_string()))?;
    let _ = bot.http.set(client.http.clone());
    let shards = client.shard_manager.clone();
    let stopping = surface.stopping();
    let session_surface = surface.clone();
    surface.spawn(async move {
        tokio::select! {
            result = client.start() => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "discord: the gateway session ended");
                    session_surface.report(SurfaceState::Down {
                        error: format!("the gateway session ended: {e}"),
                    });
                }
            }
            _ = stopping.cancelled() => shards.shutdown_all().await,
        }
    });
    match tokio::time::timeout(wait, ready_rx).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            surface.shutdown().await;
            return Err(DiscordError::Gateway {
                secs: wait.as_secs(),
                detail: "the gateway session ended before READY".into(),
            });
        }
        Err(_) => {
            surface.shutdown().await;
            return Err(DiscordError::Gateway {
                secs: wait.as_secs(),
                detail: "no READY".into(),
            });
        }
    }
    hub.resume_unfinished().await;
    tracing::info!(api = %config.api_url(), "discord: the bot is listening");
    Ok(surface)
}
