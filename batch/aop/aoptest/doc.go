// Package aoptest is the sandbox: a local server that speaks the AOP Recharge
// API closely enough to exercise every outcome the engine must handle, and
// that the demo, the tests and the benchmarks run against.
//
// It serves:
//
//	POST /api/AOP/Recharge              referenceid de-duplication (18), a wallet
//	                                    (16), operators down (13), limits (17),
//	                                    failures (14), validation (8), pending (0)
//	POST /api/AOP/RechargeStatus        status enquiry, with pending transactions
//	                                    turning final and refunds arriving later
//	POST /api/AOP/FetchConsumerDetails  canned bills, deterministic per canumber
//	GET  /api/AOP/Statement             the provider's statement as CSV
//	POST /sandbox/token                 mints expiring bearer tokens
//
// Faults are injected on Recharge as fractions of requests: HTTP 5xx before
// anything is recorded, 429 with Retry-After, and, after the transaction was
// recorded and charged, a lost response (connection closed), a stall past the
// client's timeout, or code 9 on HTTP 412. The last three are the cases where
// the client cannot know whether it paid, which is the point of the sandbox.
// Config.LimitRPS is the provider's own throttle: above that many requests
// in any second it answers 429 with a Retry-After saying when a slot frees.
// SetLatency slows the answers mid-run.
//
// The sandbox deliberately shares no code with package aop (the client): a
// fake that parsed requests the same way as the client would hide the
// client's bugs. Its wire types are written from the specification alone.
//
// Every decision (pending? fault? failure?) is derived from a hash of the
// seed, the referenceid, the attempt number for that referenceid and the name
// of the decision, so the same seed and the same requests give the same
// answers however goroutines are scheduled. Pending transactions and refunds
// become final lazily, on the configured clock, whenever state is observed.
package aoptest
