import sys

from local_ai_router.main import main

sys.exit(main())
