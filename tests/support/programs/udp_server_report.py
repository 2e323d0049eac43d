from socket import *

serverPort = 8081
serverSocket = socket(AF_INET, SOCK_DGRAM)
serverSocket.bind(('127.0.0.1', serverPort))
print("The server is ready to receive")
while True:
    message, clientAddress = serverSocket.recvfrom(1024)
    print(message.decode())
    serverSocket.sendto("thank you !".encode(), clientAddress)
