"""
Files of every protected class, named as their software names them, and files that only
look like them. Paths are relative to a log or tmp directory.
"""

EXAMPLES = {
    "mysql-binlog": [
        "mysql/mysql-bin.000001",
        "mysql/mysql-bin.index",
        "mariadb-bin.000002",
        "db1-relay-bin.000003",
        "db1-relay-bin.index",
        "binlog.000004",
        "binlog.index",
    ],
    "postgresql-wal": [
        "main/pg_wal/archive_status/000000010000000000000001.done",
        "main/pg_xlog/000000010000000000000002",
        "wal-archive/000000010000000000000003",
        "wal-archive/000000010000000000000004.partial",
        "wal-archive/000000010000000000000002.00000028.backup",
        "wal-archive/00000002.history",
    ],
    "etcd": [
        "default.etcd/member/wal/0000000000000000-0000000000000000.wal",
        "default.etcd/member/snap/db",
        "0000000000000002-0000000000000003.snap",
    ],
    "zookeeper": [
        "zk/version-2/acceptedEpoch",
        "log.100000001",
        "snapshot.100000000",
    ],
    "kafka": [
        "orders-0/00000000000000000000.log",
        "orders-0/00000000000000000000.index",
        "orders-0/00000000000000000000.timeindex",
        "orders-0/leader-epoch-checkpoint",
        "broker/meta.properties",
        "broker/recovery-point-offset-checkpoint",
    ],
    "redis": [
        "appendonly.aof",
        "appendonlydir/appendonly.aof.1.incr.aof",
        "dump.rdb",
        "temp-1234.rdb",
    ],
    "mongodb": [
        "mongo/journal/WiredTigerLog.0000000001",
        "mongo/WiredTiger.wt",
        "mongo/collection-0-123456789.wt",
        "mongo/mongod.lock",
    ],
    "elasticsearch": [
        "es/nodes/0/indices/abc/0/index/_0.cfs",
        "es/indices/Q3Qz4mWpTiy5Xl8cK0lW6g/0/index/segments_1",
        "es/translog-1.tlog",
        "es/translog.ckp",
    ],
    "journald": [
        "machine/system@0123-4567-89ab.journal",
        "machine/user-1000@abcd.journal~",
    ],
    "critical": ["server.key", "site.crt", "certs/bundle.pem"],
}

# Rotated logs of the same software, and other near misses: cleanup must still remove them.
LOOKALIKES = [
    "app.log.1",
    "syslog.2",
    "mysql/error.log.1",
    "mysql/mysql-slow.log.1",
    "postgresql/postgresql-15-main.log.1",
    "kafka/server.log.1",
    "redis/redis-server.log.1",
    "mongodb/mongod.log.1",
    "elasticsearch/cluster.log.1",
    "zookeeper/zookeeper.log.1",
    "etcd.log.1",
    "journal.log.1",
    "binlog.log.1",
    "snapshot.log.1",
    "orders-0/consumer.log.1",
]
