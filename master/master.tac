# twistd application file of a ci-master daemon.  `ci-master start DIR` runs twistd with this
# file from inside DIR; it is not meant to be edited or run by hand.
import os

from master.application import make_application

application = make_application(os.getcwd())
