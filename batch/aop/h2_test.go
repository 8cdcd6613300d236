package aop

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// An HTTP/2 provider that resets a Recharge's stream with PROTOCOL_ERROR
// after reading it whole may have processed it; Go's HTTP/2 client would
// post it again by itself (the body is replayable), a resend with no
// enquiry before it. The client lets no request go twice once it was
// written: the provider sees it once, and the row is unknown, for an
// enquiry to settle. (A money-safety review found the transport's retry.)
func TestHTTP2ResetAfterTheRequestIsNotSentAgain(t *testing.T) {
	// A certificate for 127.0.0.1, and a client trusting it.
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	cert := ts.TLS.Certificates[0]
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	ts.Close()

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var requests atomic.Int64 // Recharge requests read whole
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go resetEveryStream(c, &requests)
		}
	}()

	hc := defaultHTTPClient(4)
	hc.Transport.(*http.Transport).TLSClientConfig.RootCAs = pool
	c, err := New(Options{BaseURL: "https://" + ln.Addr().String(), RegistrationID: "AOP-554", HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	// Go's client waits 1 s, then 2, 4... between its own tries.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, _ := c.Recharge(ctx, rechargeBody(t, "H2-1"))
	if n := requests.Load(); n != 1 {
		t.Errorf("the provider read the Recharge %d times, want 1: the transport sent it again after the reset", n)
	}
	if res.Class != ClassUnknown {
		t.Errorf("a Recharge reset after it was read whole: %s (%s), want unknown", res.Class, res.Message)
	}
}

// resetEveryStream speaks just enough HTTP/2 on c to read requests, and
// answers each request read whole (END_STREAM) with RST_STREAM
// PROTOCOL_ERROR, counting it.
func resetEveryStream(c net.Conn, requests *atomic.Int64) {
	defer c.Close()
	r := bufio.NewReader(c)
	preface := make([]byte, 24)
	if _, err := io.ReadFull(r, preface); err != nil {
		return
	}
	frame := func(typ, flags byte, stream uint32, payload []byte) error {
		h := make([]byte, 9, 9+len(payload))
		h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
		h[3], h[4] = typ, flags
		binary.BigEndian.PutUint32(h[5:], stream&0x7fffffff)
		_, err := c.Write(append(h, payload...))
		return err
	}
	const (
		typeData, typeHeaders, typeRST, typeSettings = 0x0, 0x1, 0x3, 0x4
		flagEndStream, flagAck                       = 0x1, 0x1
		protocolError                                = 0x1
	)
	if frame(typeSettings, 0, 0, nil) != nil {
		return
	}
	for {
		h := make([]byte, 9)
		if _, err := io.ReadFull(r, h); err != nil {
			return
		}
		n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		typ, flags, stream := h[3], h[4], binary.BigEndian.Uint32(h[5:])&0x7fffffff
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			return
		}
		switch {
		case typ == typeSettings && flags&flagAck == 0:
			if frame(typeSettings, flagAck, 0, nil) != nil {
				return
			}
		case (typ == typeData || typ == typeHeaders) && flags&flagEndStream != 0:
			requests.Add(1)
			code := make([]byte, 4)
			binary.BigEndian.PutUint32(code, protocolError)
			if frame(typeRST, 0, stream, code) != nil {
				return
			}
		}
	}
}
