"""Services: the rules of the programme, over the ports in `loyalty.ports`."""
