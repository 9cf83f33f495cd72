# twistd application file of a ci-worker daemon.  `ci-worker start DIR` runs twistd with this
# file from inside DIR; it is not meant to be edited or run by hand.
import os

from worker.daemon import make_application

application = make_application(os.getcwd())
