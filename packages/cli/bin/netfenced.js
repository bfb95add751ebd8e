#!/usr/bin/env node
// Installed as a command by npm; the program itself is built into dist/.
require('../dist/main.js');
