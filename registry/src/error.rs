//! `RegistryError`, what registry operations return, and its `ErrorCode` for the hub's
//! adapters (see `shoal_store::domain_error!`).

shoal_store::domain_error! {
    /// What registry operations return.
    pub enum RegistryError, RegistryResult {}
}
