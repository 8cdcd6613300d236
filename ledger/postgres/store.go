package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aopbatch/aopbatch/ledger"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a ledger in a PostgreSQL database, shared by every process and
// host that runs the batches of one provider account.
type Store struct {
	pool     *pgxpool.Pool
	location string // the URL without its password
	now      func() time.Time
	skew     atomic.Int64 // database clock minus ours, in µs
	clockMu  sync.Mutex
	reading  clockReading // the one skew comes from
	clock    func() time.Time
	// callTimeout bounds each call a run waits on (bound).
	callTimeout time.Duration
	// abandon is how long one of our transactions may sit idle
	// (AbandonAfter), and so how long a recording may wait on its own
	// process in the middle of a statement before it counts as frozen.
	abandon time.Duration
}

// Options tune Open. The zero value is the safe default.
type Options struct {
	// Now is the clock; nil means the database's, as read through this
	// host's (so that hosts agree on when a lease expires).
	Now func() time.Time
	// MaxConns caps the connection pool; 0 means 8.
	MaxConns int32
	// AbandonAfter is how long PostgreSQL lets one of our transactions
	// sit idle before it ends the session; 0 means AbandonTx.
	AbandonAfter time.Duration
	// CallTimeout bounds each call a run waits on; 0 means callTimeout.
	CallTimeout time.Duration
}

// callTimeout bounds one call on the ledger that a run waits on (a rate
// reservation, a claim, a count, a chunk of a file's rows, the takeover
// of rows in flight): a server that stops answering while its host's
// kernel still does (a frozen server, a stalled proxy) is noticed by no
// TCP timer, and a nightly run would wait on it for ever. The writer's
// commits have writeTimeout.
const callTimeout = time.Minute

// bulkCalls is how many call timeouts a call on a whole batch has (a Move,
// a batch's rows cleared): one statement may cover a million rows, and
// one cut short would be cut short again on every run.
const bulkCalls = 10

// bound is ctx bounded by the store's call timeout.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.callTimeout)
}

// boundBulk is ctx bounded for a call on a whole batch (bulkCalls).
func (s *Store) boundBulk(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, bulkCalls*s.callTimeout)
}

// AbandonTx is how long a transaction of ours may sit idle, at the least,
// before PostgreSQL ends its session and rolls it back. A process paused
// inside a transaction (SIGSTOP, a frozen VM) holds the transaction's
// locks while its kernel keeps the connection alive, and the recovery of
// its batch's rows waits for it. Our transactions wait between statements
// only for a parse of CSV rows (an ingest chunk), but a read of the file
// may stall (a network file system) or the host be suspended: a run sets
// its lease's TTL when that is longer, as a process paused longer than
// its lease has lost it anyway.
const AbandonTx = 15 * time.Second

// Abandoned reports whether err is PostgreSQL ending a transaction of ours:
// one that sat idle longer than AbandonAfter, or a recording another
// process ended on taking the batch over from this one, paused past its
// lease (admin_shutdown, also what a server shutting down sends).
func Abandoned(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "25P03" || pe.Code == "57P01")
}

// connectTimeout bounds a connection's setup, pgx's own being 2 minutes:
// a server that accepts and never answers fails the command soon.
const connectTimeout = 10 * time.Second

// deadPeer is how soon either end of a connection gives the other up
// when it stops answering: a host that lost power or network, a NAT that
// dropped the flow. TCP's defaults notice after some two hours with
// nothing to send, and after some fifteen minutes with data unacknowledged;
// meanwhile a run waits on the ledger with nothing to say, and a
// takeover waits on the locks the dead process's session still holds.
var deadPeer = struct {
	idle, interval time.Duration
	count          int
	unacked        time.Duration // TCP_USER_TIMEOUT, where there is one; at least AbandonAfter
}{idle: 10 * time.Second, interval: 5 * time.Second, count: 3, unacked: 30 * time.Second}

// serverDeadPeer has the server apply deadPeer to its end of c, so that it
// ends the session of a client that vanished, and its locks with it, even
// mid-COPY. A server that lacks one of the settings (older versions, or
// platforms without it) keeps its own.
func serverDeadPeer(ctx context.Context, c *pgx.Conn, unacked time.Duration) error {
	for _, set := range []string{
		fmt.Sprintf("SET tcp_keepalives_idle = %d", int(deadPeer.idle.Seconds())),
		fmt.Sprintf("SET tcp_keepalives_interval = %d", int(deadPeer.interval.Seconds())),
		fmt.Sprintf("SET tcp_keepalives_count = %d", deadPeer.count),
		fmt.Sprintf("SET tcp_user_timeout = %d", unacked.Milliseconds()),
	} {
		if _, err := c.Exec(ctx, set); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && (pe.Code == "42704" || pe.Code == "22023") {
				continue // undefined_object, invalid_parameter_value
			}
			return err
		}
	}
	return nil
}

// IsURL reports whether location names a PostgreSQL ledger.
func IsURL(location string) bool {
	return strings.HasPrefix(location, "postgres://") || strings.HasPrefix(location, "postgresql://")
}

// Open connects to the ledger at the postgres:// URL dsn and applies
// pending migrations. The password comes from the URL, PGPASSWORD or
// ~/.pgpass; no message Open returns carries it.
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	loc := Redact(dsn)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors may quote the URL: say only which one.
		return nil, fmt.Errorf("open ledger %s: not a valid PostgreSQL URL", loc)
	}
	cfg.MaxConns = 8
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "aopbatch"
	abandon := AbandonTx
	if o.AbandonAfter > 0 {
		abandon = o.AbandonAfter
	}
	if cfg.ConnConfig.ConnectTimeout == 0 { // the URL's connect_timeout wins
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	// Data unacknowledged, or a window shut, as long as a paused process
	// keeps its transactions (a reader paused mid-result shuts its window).
	unacked := max(deadPeer.unacked, abandon)
	cfg.ConnConfig.DialFunc = (&net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: deadPeer.idle, Interval: deadPeer.interval, Count: deadPeer.count},
		Control:         userTimeout(unacked),
	}).DialContext
	// SET, not a startup parameter: a pooler in front of the server may
	// refuse parameters it does not know.
	setAbandon := "SET idle_in_transaction_session_timeout = " + strconv.FormatInt(abandon.Milliseconds(), 10)
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if _, err := c.Exec(ctx, setAbandon); err != nil {
			return err
		}
		return serverDeadPeer(ctx, c, unacked)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", loc, scrub(err, dsn))
	}
	s := &Store{pool: pool, location: loc, clock: o.Now, callTimeout: callTimeout, abandon: abandon}
	if o.CallTimeout > 0 {
		s.callTimeout = o.CallTimeout
	}
	s.now = s.dbNow
	if o.Now != nil {
		s.now = o.Now
	}
	if err := s.syncClock(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open ledger %s: %w", loc, scrub(err, dsn))
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open ledger %s: %w", loc, scrub(err, dsn))
	}
	return s, nil
}

// Redact returns dsn without its password, for messages.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unreadable URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// HasPassword reports whether dsn names a password itself.
func HasPassword(dsn string) bool {
	u, err := url.Parse(dsn)
	if err != nil {
		return false
	}
	if _, ok := u.User.Password(); ok {
		return true
	}
	return u.Query().Has("password")
}

// scrub removes dsn's password from an error's text, should a driver
// message quote it.
func scrub(err error, dsn string) error {
	if err == nil {
		return nil
	}
	u, perr := url.Parse(dsn)
	if perr != nil || u.User == nil {
		return err
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
}

// Location implements ledger.Reader: the URL without its password.
func (s *Store) Location() string { return s.location }

// Shared implements ledger.Store: many processes, on many hosts, run one
// batch together.
func (s *Store) Shared() bool { return true }

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

var _ ledger.Store = (*Store)(nil)

func (s *Store) nowMS() int64 { return s.now().UnixMilli() }

// Now implements ledger.Store: the database's clock.
func (s *Store) Now() time.Time { return s.now() }

// dbNow is this host's clock corrected by the database's.
func (s *Store) dbNow() time.Time {
	return time.Now().Add(time.Duration(s.skew.Load()) * time.Microsecond)
}

// syncClock reads the database's clock a few times (noteClock).
func (s *Store) syncClock(ctx context.Context) error {
	for range 3 {
		sent := time.Now()
		var dbUS int64
		if err := s.pool.QueryRow(ctx, `SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint`).Scan(&dbUS); err != nil {
			return err
		}
		s.noteClock(sent, time.Since(sent), dbUS)
	}
	return nil
}

// clockReading is a reading of the database's clock: how far it is from
// ours, within half the round trip it was read in.
type clockReading struct {
	skew int64 // µs
	rtt  time.Duration
	at   time.Time // when it was read, by our clock
}

// clockDrift is how much a reading's error bound grows a minute: clocks
// drift apart, so a tight reading from an hour ago is not trusted over a
// looser one from now.
const clockDrift = time.Millisecond

// bound is the reading's error bound at t.
func (r clockReading) bound(t time.Time) time.Duration {
	return r.rtt/2 + clockDrift*time.Duration(t.Sub(r.at)/time.Minute)
}

// noteClock takes a reading of the database's clock (dbUS, read during
// the round trip that began at sent) as the skew when its error bound is
// no wider than the one in use, or when the two cannot both be right (a
// clock was stepped: NTP, a resumed virtual machine). Otherwise readings
// under load would move the skew by up to half their round trip each time:
// processes on one host, their readings 24 ms apart, shared out one
// schedule's slots as if they did not overlap, and put 154 requests in a
// second at --rate 150.
func (s *Store) noteClock(sent time.Time, rtt time.Duration, dbUS int64) {
	r := clockReading{skew: dbUS - sent.Add(rtt/2).UnixMicro(), rtt: rtt, at: sent}
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	if old := s.reading; !old.at.IsZero() {
		oldBound, newBound := old.bound(r.at), r.rtt/2
		apart := time.Duration(r.skew-old.skew) * time.Microsecond
		if newBound > oldBound && apart.Abs() <= oldBound+newBound {
			return
		}
	}
	s.reading = r
	s.skew.Store(r.skew)
}

// migrate applies the embedded migrations newer than the recorded version
// in one transaction, under an advisory lock: processes that open a new
// ledger at once take turns, and a newer schema is refused.
func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7061626174636801)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// Created only when missing: CREATE ... IF NOT EXISTS still needs the
	// right to create, which a role that only uses the ledger lacks.
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('aopbatch_schema') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if !exists {
		if _, err := tx.Exec(ctx, `CREATE TABLE aopbatch_schema (version INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("create the ledger's tables (this database role needs CREATE on the schema the first time, and to upgrade it): %w", err)
		}
	}
	var version int
	err = tx.QueryRow(ctx, `SELECT version FROM aopbatch_schema`).Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, `INSERT INTO aopbatch_schema (version) VALUES (0)`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(names) {
		return fmt.Errorf("schema version %d is newer than this aopbatch understands (%d): upgrade aopbatch", version, len(names))
	}
	if version == len(names) {
		return nil
	}
	for i := version; i < len(names); i++ {
		body, err := migrations.ReadFile(names[i])
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, string(body)); err != nil {
			return fmt.Errorf("upgrade the ledger's tables (%s; this database role needs to own them): %w", names[i], err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE aopbatch_schema SET version = $1`, len(names)); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return tx.Commit(ctx)
}

// holding locks o's session on batch seq inside tx, failing with
// ErrLeaseLost when o has none: a takeover deletes the sessions of dead
// processes that no write holds (it leaves one so locked for a later
// round), so a write either holds its session to the end or finds it
// gone. A lease that expired with nobody taking it over is still o's.
func holding(ctx context.Context, tx pgx.Tx, seq int64, o ledger.Owner) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM sessions WHERE batch = $1 AND owner = $2 FOR KEY SHARE`, seq, o.ID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("batch %d: %w", seq, ledger.ErrLeaseLost)
	}
	return err
}

// beginHolding begins a transaction of o's on batch seq, under o's lease.
func (s *Store) beginHolding(ctx context.Context, seq int64, o ledger.Owner) (pgx.Tx, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if err := holding(ctx, tx, seq, o); err != nil {
		tx.Rollback(ctx)
		return nil, err
	}
	return tx, nil
}

// isUniqueViolation reports whether err is PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// Size is the room the ledger's tables take, their indexes included: not
// the database's, whose catalogs alone take some 7 MB (status gave a
// 3,000-row batch 11 MB), and which may hold other things.
func (s *Store) Size(ctx context.Context) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
		WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1)`,
		ledgerTables).Scan(&n)
	return n, err
}

// ledgerTables are the tables the migrations create.
var ledgerTables = []string{"aopbatch_schema", "batches", "sessions", "rows", "attempts", "rate_budgets", "processes"}
