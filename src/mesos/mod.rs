//! Apache Mesos: the v1 protobuf messages, the RecordIO stream both HTTP APIs use,
//! the framework (scheduler) and what it and the executor agree on about a task.

pub mod http;
pub mod proto;
pub mod recordio;
pub mod scheduler;
pub mod staging;
pub mod task;
