//! `domain_error!`: the error enum of a domain crate (`RegistryError`, `TrackingError`,
//! `FleetError`, …), written once.
//!
//! Every domain's errors have the same core (not found, already exists, invalid argument,
//! failed precondition, resource exhausted, a bad name, the workspace's, the store's, I/O,
//! the random source, internal) plus the errors of the crates it builds on, which keep their
//! own codes. The macro writes the enum, its `Result` alias, the constructors, the
//! [`ServiceError`](crate::ServiceError) impl that the hub's adapters map from, and the
//! conversion into [`WorkspaceError`](crate::WorkspaceError) that `WorkspaceContents` impls
//! use.

/// Defines a domain error enum. Each extra variant wraps another crate's error (with
/// `#[from]`) and says how to classify it:
///
/// ```ignore
/// shoal_store::domain_error! {
///     /// What fleet operations return.
///     pub enum FleetError, FleetResult {
///         /// The registry's refusals keep their codes.
///         Registry(shoal_registry::RegistryError) => |e| shoal_store::ServiceError::error_code(e),
///         Publish(crate::publish::PublishError) => |_| shoal_store::ErrorCode::Internal,
///     }
/// }
/// ```
///
/// The crate needs `thiserror` as a dependency.
#[macro_export]
macro_rules! domain_error {
    (
        $(#[$meta:meta])*
        pub enum $name:ident, $result:ident {
            $( $(#[$vmeta:meta])* $variant:ident($inner:ty) => $code:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, thiserror::Error)]
        pub enum $name {
            #[error("{kind} '{name}' not found")]
            NotFound { kind: &'static str, name: String },
            #[error("{kind} '{name}' already exists")]
            AlreadyExists { kind: &'static str, name: String },
            #[error("{0}")]
            InvalidArgument(String),
            #[error("{0}")]
            FailedPrecondition(String),
            #[error("{0}")]
            ResourceExhausted(String),
            #[error(transparent)]
            InvalidName(#[from] $crate::InvalidName),
            #[error(transparent)]
            Workspace(#[from] $crate::WorkspaceError),
            #[error("storage: {0}")]
            Storage(#[from] $crate::StoreError),
            #[error(transparent)]
            Io(#[from] $crate::IoError),
            #[error(transparent)]
            Random(#[from] $crate::RandomSourceError),
            $(
                $(#[$vmeta])*
                #[error(transparent)]
                $variant(#[from] $inner),
            )*
            #[error("{0}")]
            Internal(String),
        }

        pub type $result<T> = Result<T, $name>;

        impl $name {
            pub fn not_found(kind: &'static str, name: impl Into<String>) -> $name {
                $name::NotFound {
                    kind,
                    name: name.into(),
                }
            }

            pub fn already_exists(kind: &'static str, name: impl Into<String>) -> $name {
                $name::AlreadyExists {
                    kind,
                    name: name.into(),
                }
            }

            pub fn invalid(message: impl Into<String>) -> $name {
                $name::InvalidArgument(message.into())
            }
        }

        impl $crate::ServiceError for $name {
            fn error_code(&self) -> $crate::ErrorCode {
                #[allow(unused_imports)]
                use $crate::{ErrorCode, ServiceError};
                match self {
                    $name::NotFound { .. } => ErrorCode::NotFound,
                    $name::AlreadyExists { .. } => ErrorCode::AlreadyExists,
                    $name::InvalidArgument(_) | $name::InvalidName(_) => {
                        ErrorCode::InvalidArgument
                    }
                    $name::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
                    $name::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
                    $name::Workspace(e) => e.error_code(),
                    $(
                        $name::$variant(e) => {
                            let classify: fn(&$inner) -> ErrorCode = $code;
                            classify(e)
                        }
                    )*
                    $name::Storage(_) | $name::Io(_) | $name::Random(_) | $name::Internal(_) => {
                        ErrorCode::Internal
                    }
                }
            }
        }

        /// Lets a domain's error travel out of `WorkspaceContents`.
        impl From<$name> for $crate::WorkspaceError {
            fn from(error: $name) -> $crate::WorkspaceError {
                match error {
                    $name::Workspace(e) => e,
                    other => $crate::WorkspaceError::contents(other),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::{ErrorCode, ServiceError, StoreError, WorkspaceError};

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    pub struct Inner(ErrorCode);

    crate::domain_error! {
        /// A domain for the test.
        pub enum TestError, TestResult {
            Inner(Inner) => |e| e.0,
        }
    }

    #[test]
    fn codes_follow_the_variant_or_the_wrapped_error() {
        assert_eq!(
            TestError::not_found("model", "m").error_code(),
            ErrorCode::NotFound
        );
        assert_eq!(
            TestError::not_found("model", "m").to_string(),
            "model 'm' not found"
        );
        assert_eq!(
            TestError::invalid("x").error_code(),
            ErrorCode::InvalidArgument
        );
        let storage: TestError = StoreError::Backend("disk".into()).into();
        assert_eq!(storage.error_code(), ErrorCode::Internal);
        assert_eq!(storage.to_string(), "storage: backend: disk");
        let wrapped: TestError = Inner(ErrorCode::AlreadyExists).into();
        assert_eq!(wrapped.error_code(), ErrorCode::AlreadyExists);
        let workspace: TestError = WorkspaceError::NotFound("w".into()).into();
        let back: WorkspaceError = workspace.into();
        assert!(
            matches!(back, WorkspaceError::NotFound(_)),
            "unwrapped again"
        );
        let busy: TestResult<()> = Err(TestError::FailedPrecondition("busy".into()));
        let contents: WorkspaceError = busy.map_err(WorkspaceError::from).unwrap_err();
        assert_eq!(contents.error_code(), ErrorCode::FailedPrecondition);
    }
}
