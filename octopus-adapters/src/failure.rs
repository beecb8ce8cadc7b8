//! How work on a SQL backend's connection stopped.

use octopus::Error;

/// Why work on a connection stopped: the driver's error, which the store
/// classifies against its own name, or an error of Octopus' own (a refusal,
/// a conflict), returned as it is.
pub(crate) enum Failure<E> {
    /// What the driver reported.
    Driver(E),
    /// An error of Octopus.
    Octopus(Error),
}

impl<E> From<Error> for Failure<E> {
    fn from(e: Error) -> Self {
        Failure::Octopus(e)
    }
}

impl<E> Failure<E> {
    /// The error a caller sees: the driver's through `classify`, Octopus'
    /// own unchanged.
    pub(crate) fn into_error(self, classify: impl FnOnce(E) -> Error) -> Error {
        match self {
            Failure::Driver(e) => classify(e),
            Failure::Octopus(e) => e,
        }
    }
}
