//! The composition root: builds every part of a gateway from its [`Config`], runs it, and shuts
//! it down in order.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::error_handling::HandleError;
use axum::Router;
use chunker::MasterKey;
use libp2p::{Multiaddr, PeerId};
use s3s::service::S3ServiceBuilder;
use storage_node::client::{serve_registrations, LaneAdmission, NodeClient};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::audit::Auditor;
use crate::census::Census;
use crate::config::Config;
use crate::hybrid::pieces::RoutedPieces;
use crate::hybrid::Remotes;
use crate::ledger::{Ledger, Libp2pLedgerNet, Meter};
use crate::meta::Meta;
use crate::mirror::Mirror;
use crate::nodes::Nodes;
use crate::objects::{DataConfig, ObjectService};
use crate::pieces::{Libp2pPieces, PieceNet};
use crate::repair::{Health, Repairer};
use crate::s3::auth::StoredKeys;
use crate::s3::S3Api;
use crate::secrets;
use crate::tier::Tierer;

/// Nodes whose registration streams are served at once.
const MAX_REGISTRATIONS: usize = 4096;

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// Where S3 clients connect.
    pub s3_addr: SocketAddr,
    /// Where `/health` and the admin API are served.
    pub admin_addr: SocketAddr,
    /// The admin API's bearer token (also in `<data_dir>/admin.token`).
    pub admin_token: String,
    /// The gateway's libp2p identity, which nodes are configured to obey.
    pub peer_id: PeerId,
    /// Addresses nodes can dial, each ending in `/p2p/<peer id>`.
    pub p2p_addrs: Vec<Multiaddr>,
    pub meta: Arc<Meta>,
    pub master: Arc<MasterKey>,
    pub nodes: Arc<Nodes>,
    pub objects: Arc<ObjectService>,
    pub auditor: Arc<Auditor>,
    pub repairer: Arc<Repairer>,
    pub health: Arc<Health>,
    pub mirror: Arc<Mirror>,
    pub tierer: Arc<Tierer>,
    pub census: Arc<Census>,
    pub ledger: Arc<Ledger>,
    /// Piece operations on nodes (and remotes), as every worker sends them.
    pub net: Arc<dyn PieceNet>,
    host: storage_node::net::HostHandle,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

/// Opens the metadata and keys in `config.data_dir` (creating them on first start).
pub fn open_state(data_dir: &Path) -> anyhow::Result<(Arc<Meta>, Arc<MasterKey>)> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let master = Arc::new(secrets::master_key(data_dir)?);
    let meta = Arc::new(
        Meta::open(&data_dir.join("meta"))
            .with_context(|| format!("open the metadata in {}", data_dir.display()))?,
    );
    Ok((meta, master))
}

impl Gateway {
    /// Starts every part and returns once all listeners are bound.
    pub async fn start(config: Config) -> anyhow::Result<Gateway> {
        let (meta, master) = open_state(&config.data_dir)?;
        let keypair = secrets::identity(&config.data_dir)?;
        let peer_id = keypair.public().to_peer_id();
        let orphans = meta
            .abandon_all_uploads()
            .context("collect the pieces of uploads cut short by the last stop")?;
        if orphans > 0 {
            tracing::info!(
                pieces = orphans,
                "uploads interrupted by the last stop were abandoned; their pieces will be deleted"
            );
        }

        let host = storage_node::net::spawn(keypair.clone())?;
        for addr in &config.p2p_listen {
            host.listen(addr.clone())
                .await
                .with_context(|| format!("listen for nodes on {addr}"))?;
        }
        let p2p_addrs = host
            .listen_addrs(config.p2p_listen.len(), std::time::Duration::from_secs(5))
            .await
            .into_iter()
            .map(|a| a.with(libp2p::multiaddr::Protocol::P2p(peer_id)))
            .collect();

        // Data lanes: nodes dial this port for connections of their own that carry pieces.
        let lanes = match config.lane_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listen for data lanes on {addr}"))?,
            ),
            None => None,
        };
        let lane_offer = match &lanes {
            Some(listener) => Some(crate::nodes::Lanes::new(
                listener.local_addr().context("the lane port")?.port(),
                config.lanes_per_node,
            )?),
            None => None,
        };
        let nodes = Arc::new(Nodes::load(
            meta.clone(),
            host.clone(),
            config.heartbeat,
            config.admission.clone(),
            crate::reputation::NodeReputation::new(&config.policy, 0).state,
            lane_offer,
        )?);
        let remotes = Arc::new(
            Remotes::new(meta.clone(), master.clone(), nodes.remote_peers())
                .context("load the buckets' remotes")?,
        );
        // Pieces go to nodes over libp2p, or (parity in the cloud) to a bucket's remote; what
        // nodes send and store is metered for the usage ledger.
        let meter = Arc::new(Meter::default());
        let client = NodeClient::new(host.clone());
        let net: Arc<dyn PieceNet> = Arc::new(RoutedPieces::new(
            Arc::new(Libp2pPieces::new(
                client.clone(),
                config.node_timeout,
                meter.clone(),
            )),
            remotes.clone(),
            nodes.remote_peers(),
        ));
        let health = Arc::new(Health::new(
            meta.clone(),
            nodes.clone(),
            config.repair.clone(),
        ));
        let objects = Arc::new(ObjectService::new(
            meta.clone(),
            nodes.clone(),
            net.clone(),
            master.clone(),
            DataConfig {
                params: config.params,
                inline_threshold: config.inline_threshold,
                write_quorum: config.write_quorum,
                write_grace: config.write_grace,
                hedge_after: config.hedge_after,
                body_timeout: config.body_timeout,
            },
            health.clone(),
            remotes.clone(),
        ));
        let auditor = Arc::new(Auditor::new(
            meta.clone(),
            nodes.clone(),
            net.clone(),
            health.clone(),
            config.audit.clone(),
            config.policy.clone(),
            meter.clone(),
        ));
        let ledger = Arc::new(Ledger::new(
            meta.clone(),
            nodes.clone(),
            Arc::new(Libp2pLedgerNet {
                client: client.clone(),
                timeout: config.node_timeout,
            }),
            keypair,
            meter,
            config.ledger.clone(),
        ));
        let repairer = Arc::new(Repairer::new(
            meta.clone(),
            nodes.clone(),
            net.clone(),
            master.clone(),
            health.clone(),
        ));

        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let host_handle = host.clone();
        if let Some(listener) = lanes {
            let (client, nodes, stop) = (client.clone(), nodes.clone(), cancel.clone());
            let admit: LaneAdmission = Arc::new(move |peer| nodes.lane_key(peer));
            tasks.spawn(async move {
                tokio::select! {
                    () = client.serve_lanes(listener, admit) => {}
                    () = stop.cancelled() => {}
                }
            });
        }
        {
            let nodes = nodes.clone();
            let handler = Arc::new(move |peer, reg| nodes.register(peer, reg));
            let stop = cancel.clone();
            tasks.spawn(async move {
                tokio::select! {
                    r = serve_registrations(host, handler, MAX_REGISTRATIONS) => {
                        if let Err(e) = r {
                            tracing::error!(error = %e, "registration service stopped");
                        }
                    }
                    () = stop.cancelled() => {}
                }
            });
        }
        let mirror = Arc::new(Mirror::new(
            meta.clone(),
            objects.clone(),
            config.mirror.clone(),
        ));
        tasks.spawn(mirror.clone().run(cancel.clone()));
        let tierer = Arc::new(Tierer::new(
            meta.clone(),
            objects.clone(),
            nodes.clone(),
            config.tier_interval,
        ));
        tasks.spawn(tierer.clone().run(cancel.clone()));
        let census = Arc::new(Census::new(
            meta.clone(),
            health.clone(),
            config.census_interval,
        ));
        tasks.spawn(census.clone().run(cancel.clone()));
        tasks.spawn(objects.clone().run_copy_in(cancel.clone()));
        tasks.spawn(auditor.clone().run(cancel.clone()));
        tasks.spawn(ledger.clone().run(cancel.clone()));
        tasks.spawn(repairer.clone().run(cancel.clone()));
        tasks.spawn(crate::gc::run(
            meta.clone(),
            nodes.clone(),
            net.clone(),
            config.gc,
            cancel.clone(),
        ));

        // The owner id listings show, and the host id every response names: stable per
        // gateway, derived from its identity.
        let owner_id =
            crate::digest::hex(blake3::hash(format!("s3 owner\0{peer_id}").as_bytes()).as_bytes());
        let request_ids = Arc::new(crate::s3::request_id::RequestIds::new(&owner_id)?);
        let s3 = {
            let mut b = S3ServiceBuilder::new(S3Api::new(
                objects.clone(),
                config.max_requests,
                config.region.clone(),
                owner_id.clone(),
            ));
            b.set_auth(StoredKeys {
                meta: meta.clone(),
                master: master.clone(),
            });
            b.set_access(crate::s3::access::Grants { meta: meta.clone() });
            b.build()
        };
        let s3 = HandleError::new(s3, |e: s3s::HttpError| async move {
            tracing::warn!(error = ?e, "S3 request failed below the S3 layer");
            axum::http::StatusCode::BAD_REQUEST
        });
        let s3_listener = tokio::net::TcpListener::bind(config.s3_listen)
            .await
            .with_context(|| format!("listen for S3 clients on {}", config.s3_listen))?;
        let s3_addr = s3_listener.local_addr()?;
        let s3_metrics = Arc::new(crate::metrics::S3Metrics::default());
        let gate = Arc::new(crate::s3::gate::Gate {
            region: config.region.as_str().into(),
        });
        let app = Router::new()
            .fallback_service(s3)
            .layer(axum::middleware::from_fn_with_state(
                gate,
                crate::s3::gate::gate,
            ))
            .layer(axum::middleware::from_fn_with_state(
                request_ids,
                crate::s3::request_id::stamp,
            ))
            .layer(axum::middleware::from_fn_with_state(
                s3_metrics.clone(),
                crate::metrics::track,
            ));
        tasks.spawn(crate::serve::serve(
            "s3",
            s3_listener,
            app,
            config.s3_limits,
            cancel.clone(),
        ));

        let admin_listener = tokio::net::TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("listen for admin requests on {}", config.admin_listen))?;
        let admin_addr = admin_listener.local_addr()?;
        let admin_token = crate::admin::token(&config.data_dir)?;
        let admin = crate::admin::router(crate::admin::AdminState {
            nodes: nodes.clone(),
            master: master.clone(),
            meta: meta.clone(),
            health: health.clone(),
            repairer: repairer.clone(),
            auditor: auditor.clone(),
            mirror: mirror.clone(),
            tierer: tierer.clone(),
            census: census.clone(),
            remotes: remotes.clone(),
            s3_metrics,
            token: admin_token.clone().into(),
            segment_width: config.params.total(),
            piece_size: config.params.piece_size() as u64,
        });
        tasks.spawn(crate::serve::serve(
            "admin",
            admin_listener,
            admin,
            config.admin_limits,
            cancel.clone(),
        ));

        tracing::info!(%s3_addr, %admin_addr, %peer_id, "gateway started");
        Ok(Gateway {
            s3_addr,
            admin_addr,
            admin_token,
            peer_id,
            p2p_addrs,
            meta,
            master,
            nodes,
            objects,
            auditor,
            repairer,
            health,
            mirror,
            tierer,
            census,
            ledger,
            net,
            host: host_handle,
            cancel,
            tasks,
        })
    }

    /// A token that stops the gateway when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs until the shutdown token fires, then stops every task.
    pub async fn wait(mut self) {
        self.cancel.cancelled().await;
        self.stop().await;
    }

    /// Stops listening, lets requests in flight finish (up to a grace period), stops workers.
    pub async fn stop(&mut self) {
        self.cancel.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(storage_node::daemon::SHUTDOWN_GRACE, drain)
            .await
            .is_err()
        {
            tracing::warn!("requests still running after the grace period; aborting them");
            self.tasks.abort_all();
        }
        // Closes the node connections (and so the registration streams, whose tasks hold the
        // registry and through it the metadata).
        self.host.shutdown().await;
        tracing::info!("gateway stopped");
    }
}
