//! `TrackingError`, what tracking operations (datasets, experiments, runs, jobs, sweeps)
//! return, and its `ErrorCode` for the hub's adapters (see `shoal_store::domain_error!`).

shoal_store::domain_error! {
    /// What tracking operations return.
    pub enum TrackingError, TrackingResult {
        /// The registry's refusals (of a run's model) keep their codes.
        Registry(shoal_registry::RegistryError) => |e| shoal_store::ServiceError::error_code(e),
        /// A run's secrets: missing ones are `NotFound`.
        Vault(shoal_store::VaultError) => |e| shoal_store::ServiceError::error_code(e),
    }
}
