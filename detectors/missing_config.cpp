namespace guardian {}
