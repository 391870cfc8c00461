//! What the workshop's exercises share: where etcd is.

/// The endpoints from `ETCD_ENDPOINTS` (comma-separated), or `127.0.0.1:2379`, where `scripts/etcd.sh up`
/// starts one. The checker sets `ETCD_ENDPOINTS` when it runs an exercise.
pub fn endpoints() -> Vec<String> {
    std::env::var("ETCD_ENDPOINTS")
        .unwrap_or_else(|_| "127.0.0.1:2379".to_string())
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}
