//! The connection to a hub: address, bearer token, one channel for every service.

use shoal_proto::access::access_service_client::AccessServiceClient;
use shoal_proto::deployment::deployment_service_client::DeploymentServiceClient;
use shoal_proto::fleet::fleet_service_client::FleetServiceClient;
use shoal_proto::registry::registry_service_client::RegistryServiceClient;
use shoal_proto::secret::secret_service_client::SecretServiceClient;
use shoal_proto::telemetry::telemetry_service_client::TelemetryServiceClient;
use shoal_proto::training::training_service_client::TrainingServiceClient;
use shoal_proto::training::worker_service_client::WorkerServiceClient;
use shoal_proto::workspace::workspace_service_client::WorkspaceServiceClient;
use std::path::Path;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;

use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Request, Status};

use crate::error::{ClientError, ClientResult};

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct TokenInterceptor {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, TokenInterceptor>;

/// Clients of every hub service over one channel.
#[derive(Clone)]
pub struct HubClient {
    pub workspaces: WorkspaceServiceClient<Authed>,
    pub registry: RegistryServiceClient<Authed>,
    pub fleet: FleetServiceClient<Authed>,
    pub deployments: DeploymentServiceClient<Authed>,
    pub telemetry: TelemetryServiceClient<Authed>,
    pub training: TrainingServiceClient<Authed>,
    pub worker: WorkerServiceClient<Authed>,
    pub secrets: SecretServiceClient<Authed>,
    /// Tokens, roles and the audit log.
    pub access: AccessServiceClient<Authed>,
}

impl HubClient {
    /// Connects to `url` (such as `http://127.0.0.1:7070`); an `https://` hub is checked
    /// against the system's roots. [`connect_with`](HubClient::connect_with) pins a CA.
    ///
    /// # Errors
    /// A message naming the URL when it is malformed or nothing answers there.
    pub async fn connect(url: &str, token: Option<&str>) -> ClientResult<HubClient> {
        HubClient::connect_with(url, token, None).await
    }

    /// Connects to `url`; over `https://`, the hub's certificate must chain to the CA in the
    /// PEM file `ca` (the hub's `DATA_DIR/tls/ca.pem`) when one is given, to the system's
    /// roots otherwise.
    ///
    /// # Errors
    /// A message naming the URL when it is malformed or nothing answers there, or naming the
    /// CA file when it cannot be read or is given for a plaintext `http://` hub.
    pub async fn connect_with(
        url: &str,
        token: Option<&str>,
        ca: Option<&Path>,
    ) -> ClientResult<HubClient> {
        let mut endpoint =
            Channel::from_shared(url.to_string()).map_err(|e| ClientError::InvalidUrl {
                url: url.into(),
                reason: e.to_string(),
            })?;
        let https = url.starts_with("https://");
        match (https, ca) {
            (true, ca) => {
                let mut tls = ClientTlsConfig::new();
                tls = match ca {
                    Some(path) => {
                        let pem = std::fs::read(path).map_err(|source| ClientError::Read {
                            path: format!("the CA file {}", path.display()),
                            source,
                        })?;
                        tls.ca_certificate(Certificate::from_pem(pem))
                    }
                    None => tls.with_native_roots(),
                };
                endpoint = endpoint
                    .tls_config(tls)
                    .map_err(|e| ClientError::InvalidUrl {
                        url: url.into(),
                        reason: error_chain(&e),
                    })?;
            }
            (false, Some(path)) => {
                return Err(ClientError::InvalidUrl {
                    url: url.into(),
                    reason: format!(
                        "a CA ({}) is given but the hub URL is plaintext: use https://",
                        path.display()
                    ),
                })
            }
            (false, None) => {}
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.into(),
                reason: error_chain(&e),
            })?;
        let header = match token {
            Some(t) => Some(
                format!("Bearer {}", t.trim())
                    .parse()
                    .map_err(|_| ClientError::InvalidToken)?,
            ),
            None => None,
        };
        let interceptor = TokenInterceptor { header };
        let max = 64 * 1024 * 1024;
        Ok(HubClient {
            workspaces: WorkspaceServiceClient::with_interceptor(
                channel.clone(),
                interceptor.clone(),
            ),
            registry: RegistryServiceClient::with_interceptor(channel.clone(), interceptor.clone())
                .max_decoding_message_size(max),
            fleet: FleetServiceClient::with_interceptor(channel.clone(), interceptor.clone()),
            secrets: SecretServiceClient::with_interceptor(channel.clone(), interceptor.clone()),
            deployments: DeploymentServiceClient::with_interceptor(
                channel.clone(),
                interceptor.clone(),
            ),
            telemetry: TelemetryServiceClient::with_interceptor(
                channel.clone(),
                interceptor.clone(),
            ),
            access: AccessServiceClient::with_interceptor(channel.clone(), interceptor.clone()),
            worker: WorkerServiceClient::with_interceptor(channel.clone(), interceptor.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            training: TrainingServiceClient::with_interceptor(channel, interceptor)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
