// Package aop is the client of the AOP Recharge API (SPEC sections 1, 2
// and 5): it posts recharge requests and status enquiries, authenticates
// them, and turns every answer into a small closed set of classes the batch
// engine acts on.
//
// The client's one job is to never misreport money. A Recharge answer is
// ClassSuccess only when the provider said code 1 with a 2xx status; an
// answer that cannot be read (non-JSON, no code, an unknown code, a body
// over 1 MiB, a connection lost after the request may have been written) is
// ClassUnknown, which the engine resolves by a status enquiry rather than
// by guessing. A failure that provably happened before the request left
// (dial refused, DNS, TLS handshake) is ClassNotSent and may be retried as
// is. The HTTP status and the provider's status boolean never decide alone:
// code 18 (duplicate) arrives with status true.
//
// The response-code table is data (codeClass). Decoding is tolerant of the
// provider's two spellings of the code key (response_code, responsecode),
// of numbers sent as strings and of unknown fields, and is split into pure
// functions (classifyRecharge, decodeStatus) so it can be fuzzed without a
// server.
//
// A status enquiry's answer is trusted only about the transaction asked
// for: data naming another referenceid is VerdictUnknown.
//
// Authenticators (NoAuth, Bearer, Command, JWT) never print their secrets:
// fmt shows only their mode, and their errors never contain a token.
package aop
