from socket import *

serverPort = 8080
serverSocket = socket(AF_INET, SOCK_STREAM)
serverSocket.bind(('localhost', serverPort))
serverSocket.listen(5)
print('This server is ready to receive')
while True:
    connectionSocket, clientAddr = serverSocket.accept()
    print(clientAddr)
    sentence = connectionSocket.recv(1024).decode()
    print(sentence)
    connectionSocket.send("thank you !".encode())
    connectionSocket.close()
