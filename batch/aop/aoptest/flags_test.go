package aoptest

import (
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFlagConfig(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	tests := []struct {
		name    string
		args    []string
		getenv  func(string) string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{"defaults", nil, env(), func(t *testing.T, c Config) {
			if c.WalletPaise != -1 || c.Auth != AuthNone || c.StallFor != 30*time.Second || c.NotFoundCode != 2 {
				t.Errorf("defaults = %+v", c)
			}
		}, ""},
		{"behaviour", []string{"--seed", "7", "--wallet", "5000.50", "--down", "12, 13", "--min-amount", "10",
			"--max-amount", "10000", "--pending-rate", "0.1", "--pending-delay", "5s", "--fault-lost", "0.01",
			"--fault-429", "0.02", "--retry-after", "3s", "--latency", "20ms", "--limit-rps", "150"}, env(), func(t *testing.T, c Config) {
			if c.Seed != 7 || c.WalletPaise != 500050 || !reflect.DeepEqual(c.DownOperators, []int64{12, 13}) ||
				c.MinAmountPaise != 1000 || c.MaxAmountPaise != 1000000 || c.PendingRate != 0.1 ||
				c.PendingDelay != 5*time.Second || c.LostRate != 0.01 || c.ThrottleRate != 0.02 ||
				c.RetryAfter != 3*time.Second || c.Latency != 20*time.Millisecond || c.LimitRPS != 150 {
				t.Errorf("config = %+v", c)
			}
		}, ""},
		{"bearer token from env", []string{"--auth", "bearer"}, env("AOP_SANDBOX_TOKEN", "tok"), func(t *testing.T, c Config) {
			if c.Auth != AuthBearer || !reflect.DeepEqual(c.Tokens, []string{"tok"}) {
				t.Errorf("config = %+v", c)
			}
		}, ""},
		{"jwt secret from env", []string{"--auth", "jwt", "--partner-id", "PS1"}, env("AOP_JWT_SECRET", "sec"), func(t *testing.T, c Config) {
			if string(c.JWTSecret) != "sec" || c.PartnerID != "PS1" {
				t.Errorf("config = %+v", c)
			}
		}, ""},
		{"jwt without secret", []string{"--auth", "jwt"}, env(), nil, "AOP_JWT_SECRET"},
		{"unknown auth", []string{"--auth", "basic"}, env(), nil, "want none, bearer or jwt"},
		{"rate above 1", []string{"--fault-5xx", "1.5"}, env(), nil, "fault-5xx"},
		{"wallet finer than a paisa", []string{"--wallet", "10.001"}, env(), nil, "wallet"},
		{"negative wallet", []string{"--wallet", "-5"}, env(), nil, "wallet"},
		{"bad operator", []string{"--down", "12,x"}, env(), nil, "operator code"},
		{"min above max", []string{"--min-amount", "100", "--max-amount", "10"}, env(), nil, "above"},
		{"negative duration", []string{"--stall-for", "-1s"}, env(), nil, "stall-for"},
		{"negative limit", []string{"--limit-rps", "-1"}, env(), nil, "limit-rps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			build := FlagConfig(fs, tt.getenv)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			c, err := build()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestIsLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:0": true, "[::1]:8080": true, "127.5.5.5:1": true,
		":8080": false, "0.0.0.0:8080": false, "192.168.1.10:8080": false, "example.com:80": false, "nonsense": false,
	} {
		if got := IsLoopbackAddr(addr); got != want {
			t.Errorf("IsLoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}
