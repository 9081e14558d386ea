// Package web holds the browser side of nodecast, embedded in the binary:
// client.js (a dependency-free ES module that speaks the host's WebSocket
// protocol with PART frames and resume, see README.md) and the live page
// (index.html, viewer.js, viewer.css) that host/api serves at / and /viewer.
//
// It imports nothing of this module: it is files, and the handler that serves
// them.
package web
