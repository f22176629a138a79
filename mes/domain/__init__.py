"""Pure rules of the MES: no database, no I/O, tested on their own.

Services (`mes.services`) apply them to stored records; the API and the screens reach them
only through the services.
"""
