package stacktest

// RemoveBinaries removes the apps and broker built for this process's stacks (Start
// builds them once into a temporary directory). Tests get it from Main; a command that
// calls Start itself (deploy/bench) calls it once its last stack has stopped.
func RemoveBinaries() { removeBinaries() }
