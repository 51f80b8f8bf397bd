module github.com/taskgrid/taskgrid

go 1.26
