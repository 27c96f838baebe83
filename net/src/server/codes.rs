//! Which stable error code (shared by the binary protocol and HTTP) each
//! failure is, and its message for a person.

use dirigo_engine::EngineError;

use super::state::DeployError;
use crate::error::PortError;
use crate::wire::ErrorCode;

/// The code of an engine error.
pub(crate) fn engine(e: &EngineError) -> ErrorCode {
    use EngineError as E;
    match e {
        E::InvalidApp { .. } | E::SourceType { .. } | E::NoDataDir(_) => ErrorCode::InvalidInput,
        E::AppExists(_) => ErrorCode::Conflict,
        E::UnknownApp(_)
        | E::NotDeployed(_)
        | E::UnknownSource { .. }
        | E::UnknownOperator { .. } => ErrorCode::NotFound,
        E::Backpressure { .. } | E::AppFull { .. } | E::Timeout(_) => ErrorCode::Backpressure,
        E::BatchTooLarge { .. } | E::EventTooLarge { .. } => ErrorCode::Limit,
        _ => ErrorCode::Failed,
    }
}

/// The code of a port's refusal.
pub(crate) fn port(e: &PortError) -> ErrorCode {
    match e {
        PortError::Decode { .. } => ErrorCode::InvalidInput,
        PortError::Engine(e) => engine(e),
        PortError::Subscribers { .. } => ErrorCode::Limit,
    }
}

/// The code of a failed deploy.
pub(crate) fn deploy(e: &DeployError) -> ErrorCode {
    match e {
        DeployError::Json(_) | DeployError::Token(_) => ErrorCode::InvalidInput,
        DeployError::Catalog(crate::error::CatalogError::UnknownKind(_)) => ErrorCode::NotFound,
        DeployError::Catalog(_) => ErrorCode::InvalidInput,
        DeployError::Engine(e) => engine(e),
    }
}
