//! Errors of graph loading and validation.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Location of a graph problem in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Place {
    /// A position in the graph file; line and column count from 1.
    Position {
        /// Graph file as given on the command line.
        file: PathBuf,
        /// Line, from 1.
        line: usize,
        /// Column in characters, from 1.
        column: usize,
    },
    /// The graph file, where no position is known (a value left at its default).
    File {
        /// Graph file as given on the command line.
        file: PathBuf,
    },
    /// A `--set PATH=VALUE` override from the command line.
    Override {
        /// The override as given, `PATH=VALUE`.
        assignment: String,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Position { file, line, column } => {
                write!(f, "{}:{line}:{column}", file.display())
            }
            Place::File { file } => write!(f, "{}", file.display()),
            Place::Override { assignment } => write!(f, "--set {assignment}"),
        }
    }
}

/// A graph that cannot be read, parsed or accepted. Each message is one line that names the
/// place, the stage or edge, the bad value and what is accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The graph file cannot be read.
    #[error("{}: cannot read the graph file: {source}", path.display())]
    Read {
        /// Graph file as given.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The RON text does not parse into the schema: a syntax error, an unknown field or stage
    /// kind, a value of the wrong type.
    #[error("{place}: {subject}{message}")]
    Syntax {
        /// Position at which the parser stopped.
        place: Place,
        /// `stage "x": ` or `edge 2: ` when the position lies inside one, else empty.
        subject: String,
        /// The parser's message.
        message: String,
    },
    /// The graph parses but breaks a rule of the schema.
    #[error("{place}: {subject}: {message}")]
    Invalid {
        /// The offending value, or the graph file when it has no position.
        place: Place,
        /// `graph`, `stage "x"` or `edge "a -> b"`.
        subject: String,
        /// The bad value and what is accepted.
        message: String,
    },
    /// A `--set PATH=VALUE` override that cannot be applied.
    #[error("--set {assignment}: {message}")]
    Override {
        /// The override as given.
        assignment: String,
        /// Reason it cannot be applied.
        message: String,
    },
}

impl GraphError {
    /// Returns the location of the problem, when it is known.
    pub fn place(&self) -> Option<&Place> {
        match self {
            GraphError::Syntax { place, .. } | GraphError::Invalid { place, .. } => Some(place),
            _ => None,
        }
    }
}
