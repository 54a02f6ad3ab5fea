//! The way out to devices: what the fleet domain publishes, behind a trait so the domain
//! does not know MQTT. The hub implements it over its MQTT client; [`MemoryPublisher`]
//! keeps what was published, for tests.

use std::sync::Mutex;

use async_trait::async_trait;
use shoal_proto::device::DesiredState;

/// A publish the transport could not take (its connection task is gone).
#[derive(Debug, Clone, thiserror::Error)]
#[error("publish to devices: {0}")]
pub struct PublishError(pub String);

/// Sends desired state, events and retained-topic clean-ups to devices.
#[async_trait]
pub trait DevicePublisher: Send + Sync + 'static {
    /// Publishes a device's desired state, retained, so the device gets it whenever it
    /// connects.
    ///
    /// # Errors
    /// [`PublishError`] when the transport is gone.
    async fn publish_desired(
        &self,
        workspace: &str,
        device: &str,
        state: &DesiredState,
    ) -> Result<(), PublishError>;

    /// Publishes a workspace event (alerts), not retained.
    ///
    /// # Errors
    /// [`PublishError`] when the transport is gone.
    async fn publish_event(&self, workspace: &str, payload: Vec<u8>) -> Result<(), PublishError>;

    /// Clears a removed device's retained topics, so nothing stale greets a device that is
    /// enrolled again under the same id.
    ///
    /// # Errors
    /// [`PublishError`] when the transport is gone.
    async fn clear_retained(&self, workspace: &str, device: &str) -> Result<(), PublishError>;
}

/// One publish, as [`MemoryPublisher`] keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    Desired {
        workspace: String,
        device: String,
        state: DesiredState,
    },
    Event {
        workspace: String,
        payload: Vec<u8>,
    },
    Cleared {
        workspace: String,
        device: String,
    },
}

/// A [`DevicePublisher`] that keeps every publish in memory, in order.
#[derive(Default)]
pub struct MemoryPublisher {
    published: Mutex<Vec<Published>>,
}

impl MemoryPublisher {
    /// Everything published so far, oldest first.
    pub fn published(&self) -> Vec<Published> {
        self.published.lock().expect("publisher lock").clone()
    }

    /// The last desired state published for `device`.
    pub fn last_desired(&self, workspace: &str, device: &str) -> Option<DesiredState> {
        self.published().into_iter().rev().find_map(|p| match p {
            Published::Desired {
                workspace: w,
                device: d,
                state,
            } if w == workspace && d == device => Some(state),
            _ => None,
        })
    }

    fn push(&self, published: Published) {
        self.published
            .lock()
            .expect("publisher lock")
            .push(published);
    }
}

#[async_trait]
impl DevicePublisher for MemoryPublisher {
    async fn publish_desired(
        &self,
        workspace: &str,
        device: &str,
        state: &DesiredState,
    ) -> Result<(), PublishError> {
        self.push(Published::Desired {
            workspace: workspace.into(),
            device: device.into(),
            state: state.clone(),
        });
        Ok(())
    }

    async fn publish_event(&self, workspace: &str, payload: Vec<u8>) -> Result<(), PublishError> {
        self.push(Published::Event {
            workspace: workspace.into(),
            payload,
        });
        Ok(())
    }

    async fn clear_retained(&self, workspace: &str, device: &str) -> Result<(), PublishError> {
        self.push(Published::Cleared {
            workspace: workspace.into(),
            device: device.into(),
        });
        Ok(())
    }
}
