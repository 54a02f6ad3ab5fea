//! `FleetError`, what fleet operations (devices, deployments, telemetry, monitors) return,
//! and its `ErrorCode` for the hub's adapters (see `shoal_store::domain_error!`).

shoal_store::domain_error! {
    /// What fleet operations return.
    pub enum FleetError, FleetResult {
        /// The registry's refusals (of a deployment's model) keep their codes.
        Registry(shoal_registry::RegistryError) => |e| shoal_store::ServiceError::error_code(e),
        /// The way out to devices is gone.
        Publish(crate::publish::PublishError) => |_| shoal_store::ErrorCode::Internal,
    }
}
