// etcd's own CLI, the same main as etcd's server/main.go: a separate module so that etcd's
// dependency versions never move Kubernetes' (and the reverse).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
