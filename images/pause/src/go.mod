module qhub.local/pause

go 1.22
