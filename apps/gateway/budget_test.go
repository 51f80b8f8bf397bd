package main

import (
	"testing"
	"testing/synctest"
	"time"
)

// A submission waiting for room takes it as soon as bytes come back, and one that finds
// room at once does not wait.
func TestBodyBudgetWakesAWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBodyBudget(10)
		if !b.take(t.Context(), 8, time.Second) {
			t.Fatal("8 of 10 bytes free: refused")
		}
		start := time.Now()
		took := make(chan bool)
		go func() { took <- b.take(t.Context(), 5, time.Second) }()
		synctest.Wait()
		time.Sleep(100 * time.Millisecond)
		b.give(8)
		if !<-took {
			t.Fatal("a waiting submission was refused though room came back within its wait")
		}
		if waited := time.Since(start); waited != 100*time.Millisecond {
			t.Errorf("waited %v, want 100ms: until the bytes came back", waited)
		}
		if !b.take(t.Context(), 5, 0) {
			t.Error("5 of 5 bytes free: refused")
		}
	})
}
